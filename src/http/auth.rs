//! Bearer-token authentication: JWT verification and minting (DESIGN §10).
//!
//! This module is pure token logic with no HTTP framework types. The poem layer
//! (`security.rs`) takes the bearer token from the `Authorization` header, calls
//! [`JwtVerifier::verify`], and maps an [`AuthError`] to a problem+json answer through
//! [`AuthError::code`] and its `Display` text.
//!
//! A verifier has one of two key sources, never both:
//! * **An identity provider's JWKS** (`APP__AUTH__JWKS_URL`): RS256, ES256 and EdDSA tokens,
//!   each verified with the key its `kid` names and only with that key's algorithm
//!   (`auth/jwks.rs`); HS256 and `none` are refused, so holding the dev secret mints nothing.
//! * **An HS256 secret** (`APP__AUTH__JWT_SECRET`, dev and tests): the algorithm is pinned to
//!   HS256, and [`TokenMinter`] makes the matching tokens for `order-service token`.
//!
//! Either way `exp`, `iss`, `aud` and `sub` must be present and `iss`/`aud` match; the token
//! may live at most the configured maximum, and its roles are read where the provider puts
//! them (`auth/claims.rs`). The pieces: `auth/principal.rs` (who the caller is),
//! `auth/token.rs` (the claims and algorithm of our own tokens), `auth/mint.rs` (making
//! them), `auth/claims.rs` (claims to principal), `auth/jwks.rs` (the provider's keys);
//! verification is here.

mod claims;
mod error;
pub mod jwks;
mod mint;
mod principal;
mod token;

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use self::claims::{ClaimPath, ClaimRules, UnknownRoles};
pub use self::error::AuthError;
use self::jwks::{Jwks, JwksMetrics, RefreshPolicy};
pub use self::mint::{random_secret, TokenMinter};
pub use self::principal::{MemberRole, Membership, Principal, Role, UnknownRole};
use self::token::{checked_settings, ALGORITHM, ALGORITHM_NAME, LEEWAY_SECS};
pub use self::token::{AuthConfigError, Claims, MIN_SECRET_BYTES};
use crate::config::AuthSettings;

/// Where a verifier gets its keys.
#[derive(Clone)]
enum Keys {
    /// The HS256 secret.
    Secret(DecodingKey),
    /// The identity provider's key set.
    Provider(Jwks),
}

/// Verifies bearer tokens: signature, `exp`/`nbf`, issuer, audience, lifetime, roles.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
    rules: ClaimRules,
    checks: Checks,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Keys::Secret(_) => "HS256 secret [redacted]".to_owned(),
            Keys::Provider(jwks) => format!("{jwks:?}"),
        };
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// An HS256 verifier with the rules of the service's own tokens; the secret's UTF-8 bytes
    /// are the HMAC key and must be at least [`MIN_SECRET_BYTES`] long.
    pub fn new(
        secret: &SecretString,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthConfigError> {
        Self::hs256(secret, issuer, audience, ClaimRules::own_tokens())
    }

    /// An HS256 verifier with `rules`.
    pub fn hs256(
        secret: &SecretString,
        issuer: &str,
        audience: &str,
        rules: ClaimRules,
    ) -> Result<Self, AuthConfigError> {
        let key = DecodingKey::from_secret(checked_settings(secret, issuer, audience)?);
        Ok(Self {
            keys: Keys::Secret(key),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            rules,
            checks: Checks::new(issuer, audience),
        })
    }

    /// A verifier of the identity provider's tokens, with the keys of `jwks`.
    pub fn provider(jwks: Jwks, issuer: &str, audience: &str, rules: ClaimRules) -> Self {
        Self {
            keys: Keys::Provider(jwks),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            rules,
            checks: Checks::new(issuer, audience),
        }
    }

    /// The verifier `settings` describe: the provider's JWKS when `jwks_url` is set (fetched
    /// once now; a failure is logged and the keys are fetched on the first token), else the
    /// HS256 secret. Registers the JWKS metrics in `registry`.
    pub async fn from_settings(
        settings: &AuthSettings,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.max_token_lifetime_secs > 0,
            "APP__AUTH__MAX_TOKEN_LIFETIME_SECS must be positive"
        );
        let path = |value: &str, name: &str| {
            ClaimPath::new(value).with_context(|| format!("{name} must not be empty"))
        };
        let mut rules = ClaimRules {
            roles: path(&settings.roles_claim, "APP__AUTH__ROLES_CLAIM")?,
            store_ids: path(&settings.store_ids_claim, "APP__AUTH__STORE_IDS_CLAIM")?,
            max_lifetime_secs: settings.max_token_lifetime_secs,
            unknown_roles: UnknownRoles::Refuse,
        };
        let Some(url) = &settings.jwks_url else {
            let secret = settings.jwt_secret.as_ref().context(
                "set APP__AUTH__JWKS_URL (your identity provider) or APP__AUTH__JWT_SECRET (HS256; `dev` generates one)",
            )?;
            return Self::hs256(secret, &settings.issuer, &settings.audience, rules)
                .context("invalid JWT settings");
        };
        anyhow::ensure!(
            !settings.issuer.is_empty() && !settings.audience.is_empty(),
            "APP__AUTH__ISSUER and APP__AUTH__AUDIENCE must not be empty"
        );
        if settings.jwt_secret.is_some() {
            tracing::warn!("APP__AUTH__JWT_SECRET is ignored: APP__AUTH__JWKS_URL is set, HS256 tokens are refused");
        }
        rules.unknown_roles = UnknownRoles::Ignore;
        let policy = RefreshPolicy {
            refresh_interval: Duration::from_millis(settings.jwks_refresh_interval_ms.max(1)),
            min_refresh_interval: Duration::from_millis(settings.jwks_min_refresh_interval_ms),
        };
        let jwks = Jwks::new(url, policy, JwksMetrics::register(registry)?)?;
        if let Err(err) = jwks.refresh("startup").await {
            tracing::warn!(error = %err, "the JWKS could not be fetched at start; tokens are refused until it can");
        }
        Ok(Self::provider(
            jwks,
            &settings.issuer,
            &settings.audience,
            rules,
        ))
    }

    /// The provider's key set, when this verifier uses one (its refresher runs beside it).
    pub fn jwks(&self) -> Option<&Jwks> {
        match &self.keys {
            Keys::Provider(jwks) => Some(jwks),
            Keys::Secret(_) => None,
        }
    }

    /// Verifies `token` (without the `Bearer ` prefix) and returns who it speaks for. With a
    /// JWKS, an unknown `kid` may fetch the key set first (rate-limited, see `auth/jwks.rs`).
    /// Nothing is built per token: the checks of each algorithm are made once, keys are shared.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = read_header(token)?;
        let data = match &self.keys {
            Keys::Secret(key) => {
                if header.alg != ALGORITHM_NAME {
                    return Err(AuthError::WrongAlgorithm);
                }
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.checks.hs256)?
            }
            Keys::Provider(jwks) => {
                if !matches!(header.alg.as_str(), "RS256" | "ES256" | "EdDSA") {
                    return Err(AuthError::AlgorithmNotAccepted);
                }
                let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
                let pinned = jwks.key(kid).await?;
                if pinned.algorithm_name() != header.alg {
                    return Err(AuthError::KeyAlgorithmMismatch {
                        token: header.alg,
                        key: pinned.algorithm_name().to_owned(),
                    });
                }
                let checks = self.checks.of(pinned.algorithm);
                jsonwebtoken::decode::<Map<String, Value>>(token, &pinned.key, checks)?
            }
        };
        self.rules
            .principal(&data.claims, jsonwebtoken::get_current_timestamp())
    }
}

/// What jsonwebtoken checks, per algorithm the service accepts: built once per verifier.
#[derive(Clone)]
struct Checks {
    hs256: Validation,
    rs256: Validation,
    es256: Validation,
    eddsa: Validation,
}

impl Checks {
    fn new(issuer: &str, audience: &str) -> Self {
        let checks = |algorithm| {
            let mut validation = Validation::new(algorithm);
            // Since jsonwebtoken 10, `iss`/`aud` are only compared when the token carries
            // them; listing them here is what makes a token without them fail.
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.leeway = LEEWAY_SECS;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation
        };
        Self {
            hs256: checks(ALGORITHM),
            rs256: checks(Algorithm::RS256),
            es256: checks(Algorithm::ES256),
            eddsa: checks(Algorithm::EdDSA),
        }
    }

    /// The checks of a provider key's algorithm (one of RS256, ES256, EdDSA: `jwks` pins no
    /// other).
    fn of(&self, algorithm: Algorithm) -> &Validation {
        match algorithm {
            Algorithm::ES256 => &self.es256,
            Algorithm::EdDSA => &self.eddsa,
            _ => &self.rs256,
        }
    }
}

/// The part of a token header the key choice needs.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Reads the header before any key is chosen, so an algorithm jsonwebtoken has no variant
/// for (notably `none`) is refused as such rather than as a JSON error.
fn read_header(token: &str) -> Result<Header, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
    use secrecy::ExposeSecret as _;
    use serde::Serialize;
    use uuid::Uuid;

    use std::collections::BTreeSet;

    use super::*;

    const ISSUER: &str = "order-service-test";
    const AUDIENCE: &str = "order-service";
    const HOUR: Duration = Duration::from_secs(3600);

    fn secret() -> SecretString {
        SecretString::from("0123456789abcdef0123456789abcdef-test-secret")
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&secret(), ISSUER, AUDIENCE).unwrap()
    }

    /// Verifies with the test verifier; HS256 verification never waits on anything.
    fn verify(token: &str) -> Result<Principal, AuthError> {
        futures::executor::block_on(verifier().verify(token))
    }

    fn minter() -> TokenMinter {
        TokenMinter::new(&secret(), ISSUER, AUDIENCE).unwrap()
    }

    fn valid_claims() -> Claims {
        let now = get_current_timestamp();
        Claims {
            sub: "alice".to_owned(),
            exp: now + 3600,
            iat: Some(now),
            nbf: None,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            roles: vec!["customer".to_owned()],
            store_ids: vec![],
        }
    }

    /// Signs any serializable payload with `alg` and the test secret.
    fn sign<T: Serialize>(alg: Algorithm, claims: &T) -> String {
        let key = EncodingKey::from_secret(secret().expose_secret().as_bytes());
        encode(&Header::new(alg), claims, &key).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_to_the_same_principal() {
        let store = Uuid::new_v4();
        let token = minter()
            .mint("bob", &[Role::Staff, Role::Analyst], &[store], HOUR)
            .unwrap();

        let principal = verify(&token).unwrap();

        assert_eq!(principal.subject, "bob");
        assert_eq!(
            principal.roles,
            BTreeSet::from([Role::Staff, Role::Analyst])
        );
        assert_eq!(principal.store_ids, vec![store]);
        assert_eq!(principal.id_namespace_key(), "bob");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (now + 3590..=now + 3600).contains(&principal.expires_at),
            "{}",
            principal.expires_at
        );
    }

    #[test]
    fn a_hand_signed_token_with_valid_claims_is_accepted() {
        // Counter-test for the hand-built refusals below: the helper itself makes good tokens.
        let token = sign(Algorithm::HS256, &valid_claims());

        assert!(verify(&token).is_ok());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let past = get_current_timestamp() - 3600;
        let token = minter()
            .mint_at(
                past,
                "alice",
                &[Role::Customer],
                &[],
                Duration::from_secs(60),
            )
            .unwrap();

        assert_eq!(verify(&token), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_expired_within_the_leeway_is_still_accepted() {
        let claims = Claims {
            exp: get_current_timestamp() - 2,
            ..valid_claims()
        };

        assert!(verify(&sign(Algorithm::HS256, &claims)).is_ok());
    }

    #[test]
    fn a_token_used_before_its_nbf_is_refused() {
        let claims = Claims {
            nbf: Some(get_current_timestamp() + 600),
            ..valid_claims()
        };

        assert_eq!(
            verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let other = TokenMinter::new(&secret(), ISSUER, "billing-service").unwrap();
        let token = other.mint("alice", &[Role::Customer], &[], HOUR).unwrap();

        assert_eq!(verify(&token), Err(AuthError::WrongAudience));
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let other = TokenMinter::new(&secret(), "someone-else", AUDIENCE).unwrap();
        let token = other.mint("alice", &[Role::Customer], &[], HOUR).unwrap();

        assert_eq!(verify(&token), Err(AuthError::WrongIssuer));
    }

    #[derive(Serialize)]
    struct ClaimsWithoutAud {
        sub: String,
        exp: u64,
        iss: String,
        roles: Vec<String>,
    }

    fn token_without_aud() -> String {
        sign(
            Algorithm::HS256,
            &ClaimsWithoutAud {
                sub: "alice".to_owned(),
                exp: get_current_timestamp() + 3600,
                iss: ISSUER.to_owned(),
                roles: vec!["customer".to_owned()],
            },
        )
    }

    #[test]
    fn a_token_without_an_audience_is_refused() {
        assert_eq!(
            verify(&token_without_aud()),
            Err(AuthError::MissingClaim("aud".to_owned()))
        );
    }

    #[test]
    fn without_required_spec_claims_jsonwebtoken_accepts_a_token_without_an_audience() {
        // Counter-test: documents the jsonwebtoken >= 10 behaviour that `set_required_spec_claims`
        // in `JwtVerifier::new` guards against. If this starts failing, the library changed.
        let mut lax = Validation::new(Algorithm::HS256);
        lax.set_issuer(&[ISSUER]);
        lax.set_audience(&[AUDIENCE]);
        let key = DecodingKey::from_secret(secret().expose_secret().as_bytes());

        let decoded = jsonwebtoken::decode::<Claims>(token_without_aud(), &key, &lax);

        assert!(decoded.is_ok());
    }

    #[test]
    fn a_token_without_an_expiry_is_refused() {
        let claims = serde_json::json!({
            "sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "roles": ["customer"],
        });

        assert_eq!(
            verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::MissingClaim("exp".to_owned()))
        );
    }

    #[test]
    fn a_token_without_an_issuer_is_refused() {
        let claims = serde_json::json!({
            "sub": "alice", "exp": get_current_timestamp() + 3600, "aud": AUDIENCE,
            "roles": ["customer"],
        });

        assert_eq!(
            verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::MissingClaim("iss".to_owned()))
        );
    }

    #[test]
    fn a_token_with_an_empty_subject_is_refused() {
        let claims = Claims {
            sub: String::new(),
            ..valid_claims()
        };

        assert_eq!(
            verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::MissingClaim("sub".to_owned()))
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_vec(&valid_claims()).unwrap());
        let token = format!("{header}.{payload}.");

        assert_eq!(verify(&token), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn a_token_signed_with_hs384_and_the_same_secret_is_refused() {
        let token = sign(Algorithm::HS384, &valid_claims());

        assert_eq!(verify(&token), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn jsonwebtoken_alone_also_refuses_an_hs384_token_under_an_hs256_validation() {
        // Defence in depth: our header pre-check is not the only guard.
        let token = sign(Algorithm::HS384, &valid_claims());
        let verifier = verifier();
        let Keys::Secret(key) = &verifier.keys else {
            panic!("an HS256 verifier");
        };

        let result = jsonwebtoken::decode::<Claims>(&token, key, &verifier.checks.hs256);

        assert_eq!(
            result.map(|_| ()).map_err(AuthError::from),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn a_token_with_a_tampered_signature_is_refused() {
        let token = minter()
            .mint("alice", &[Role::Customer], &[], HOUR)
            .unwrap();
        let (body, signature) = token.rsplit_once('.').unwrap();
        let first = signature.chars().next().unwrap();
        let flipped = if first == 'A' { 'B' } else { 'A' };
        let tampered = format!("{body}.{flipped}{}", &signature[1..]);

        assert_eq!(verify(&tampered), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_token_with_a_tampered_payload_is_refused() {
        let token = minter()
            .mint("alice", &[Role::Customer], &[], HOUR)
            .unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = Claims {
            roles: vec!["admin".to_owned()],
            ..valid_claims()
        };
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged_claims).unwrap());
        parts[1] = &forged;

        assert_eq!(verify(&parts.join(".")), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other_secret = random_secret();
        let other = TokenMinter::new(&other_secret, ISSUER, AUDIENCE).unwrap();
        let token = other.mint("alice", &[Role::Customer], &[], HOUR).unwrap();

        assert_eq!(verify(&token), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_token_with_an_unknown_role_is_refused() {
        let claims = Claims {
            roles: vec!["customer".to_owned(), "superuser".to_owned()],
            ..valid_claims()
        };

        let err = verify(&sign(Algorithm::HS256, &claims)).unwrap_err();

        assert!(matches!(&err, AuthError::InvalidRoles(why) if why.contains("superuser")));
    }

    #[test]
    fn a_token_with_no_roles_is_refused() {
        let claims = Claims {
            roles: vec![],
            ..valid_claims()
        };

        assert!(matches!(
            verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::InvalidRoles(_))
        ));
    }

    #[test]
    fn a_token_without_a_roles_claim_is_refused() {
        let claims = serde_json::json!({
            "sub": "alice", "exp": get_current_timestamp() + 3600, "iss": ISSUER, "aud": AUDIENCE,
        });

        assert!(matches!(
            verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::InvalidRoles(_))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
            assert_eq!(verify(token), Err(AuthError::Malformed), "{token}");
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        let short = SecretString::from("x".repeat(MIN_SECRET_BYTES - 1));

        assert_eq!(
            JwtVerifier::new(&short, ISSUER, AUDIENCE).unwrap_err(),
            AuthConfigError::SecretTooShort {
                actual: MIN_SECRET_BYTES - 1
            }
        );
        assert!(TokenMinter::new(&short, ISSUER, AUDIENCE).is_err());
        assert!(JwtVerifier::new(
            &SecretString::from("x".repeat(MIN_SECRET_BYTES)),
            ISSUER,
            AUDIENCE
        )
        .is_ok());
    }

    #[test]
    fn a_random_secret_is_long_enough_and_fresh_each_time() {
        let a = random_secret();
        let b = random_secret();

        assert_eq!(a.expose_secret().len(), 64);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(JwtVerifier::new(&a, ISSUER, AUDIENCE).is_ok());
    }

    #[test]
    fn minting_without_roles_fails() {
        assert!(minter().mint("alice", &[], &[], HOUR).is_err());
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::BadSignature,
            AuthError::WrongAlgorithm,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::MissingClaim("aud".to_owned()),
            AuthError::InvalidRoles("none".to_owned()),
            AuthError::AlgorithmNotAccepted,
            AuthError::KeyAlgorithmMismatch {
                token: "ES256".to_owned(),
                key: "RS256".to_owned(),
            },
            AuthError::MissingKeyId,
            AuthError::UnknownKey,
            AuthError::LifetimeTooLong { max_secs: 1 },
            AuthError::InvalidSubject,
            AuthError::InvalidStoreIds("x".to_owned()),
        ];
        let codes: BTreeSet<_> = all.iter().map(AuthError::code).collect();

        assert_eq!(codes.len(), all.len());
    }
}
