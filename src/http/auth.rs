//! Bearer-token authentication: JWT verification and minting (DESIGN §10).
//!
//! This module is pure token logic with no HTTP framework types. The poem layer
//! (`security.rs`) takes the bearer token from the `Authorization` header, calls
//! [`JwtVerifier::verify`], and maps an [`AuthError`] to a problem+json answer through
//! [`AuthError::code`] and its `Display` text.
//!
//! Tokens are HS256 only: the algorithm is pinned, `exp`, `iss`, `aud` and `sub` must be
//! present, and the `roles` claim must be a non-empty subset of the known [`Role`]s.
//! [`TokenMinter`] makes the matching tokens for `order-service token` and for tests.
//!
//! The pieces: `auth/principal.rs` (who the caller is), `auth/token.rs` (the claims and the
//! algorithm both sides share), `auth/mint.rs` (making tokens); verification is here.

mod mint;
mod principal;
mod token;

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use secrecy::SecretString;
use serde::Deserialize;

pub use self::mint::{random_secret, TokenMinter};
pub use self::principal::{Principal, Role, UnknownRole};
use self::token::{checked_settings, ALGORITHM, ALGORITHM_NAME};
pub use self::token::{AuthConfigError, Claims, MIN_SECRET_BYTES};

/// Clock skew tolerated on `exp` and `nbf`, in seconds. Small on purpose: tokens are short-lived.
const LEEWAY_SECS: u64 = 5;

/// Why a request was not authenticated. Every variant answers 401; the HTTP layer uses
/// [`AuthError::code`] as the problem type and the `Display` text as the detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header at all (constructed by the HTTP layer).
    #[error("no bearer token; send `Authorization: Bearer <token>`")]
    Missing,
    /// The header or token is not a well-formed bearer JWT.
    #[error("the Authorization header is not a well-formed bearer JWT (`Bearer <header>.<payload>.<signature>`)")]
    Malformed,
    /// The token's `exp` is in the past.
    #[error("the token has expired; obtain a new one")]
    Expired,
    /// The token's `nbf` is in the future.
    #[error("the token is not valid yet (its nbf is in the future); check the issuer's clock")]
    NotYetValid,
    /// The signature does not match the payload under the configured secret.
    #[error("the token signature is invalid")]
    BadSignature,
    /// The token is not signed with HS256 (this includes `alg: none`).
    #[error("the token must be signed with HS256; other algorithms, including none, are refused")]
    WrongAlgorithm,
    /// The token's `iss` is not the configured issuer.
    #[error("the token was issued by an issuer this service does not trust")]
    WrongIssuer,
    /// The token's `aud` is not this service.
    #[error("the token is not intended for this service (wrong aud)")]
    WrongAudience,
    /// A required claim is absent (or empty, for `sub`).
    #[error("the token's sub must be 1-128 printable characters without surrounding blanks")]
    InvalidSubject,
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    /// The `roles` claim is empty or names an unknown role.
    #[error("the token's roles claim is invalid: {0}")]
    InvalidRoles(String),
}

impl AuthError {
    /// A stable kebab-case slug, suitable as the last segment of a problem type URI.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token-missing",
            AuthError::InvalidSubject => "invalid-subject",
            AuthError::Malformed => "token-malformed",
            AuthError::Expired => "token-expired",
            AuthError::NotYetValid => "token-not-yet-valid",
            AuthError::BadSignature => "bad-signature",
            AuthError::WrongAlgorithm => "wrong-algorithm",
            AuthError::WrongIssuer => "wrong-issuer",
            AuthError::WrongAudience => "wrong-audience",
            AuthError::MissingClaim(_) => "missing-claim",
            AuthError::InvalidRoles(_) => "invalid-roles",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            ErrorKind::InvalidToken
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::Malformed,
            // Key and provider failures cannot come from the caller's token with an HMAC key;
            // refuse (fail closed) and leave a trace for operators.
            _ => {
                tracing::error!(error = %err, "unexpected JWT verification failure");
                AuthError::BadSignature
            }
        }
    }
}
/// Verifies HS256 bearer tokens against one secret, issuer and audience.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("key", &"[redacted]")
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier; the secret's UTF-8 bytes are the HMAC key and must be at least
    /// [`MIN_SECRET_BYTES`] long.
    pub fn new(
        secret: &SecretString,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthConfigError> {
        let key = DecodingKey::from_secret(checked_settings(secret, issuer, audience)?);
        let mut validation = Validation::new(ALGORITHM);
        // Since jsonwebtoken 10, `iss`/`aud` are only compared when the token carries them;
        // listing them here is what makes a token without them fail.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        Ok(Self { key, validation })
    }

    /// Verifies `token` (without the `Bearer ` prefix) and returns who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        check_algorithm(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        principal_from(data.claims)
    }
}

/// Refuses any token whose header does not say `"alg": "HS256"` with a clear
/// [`AuthError::WrongAlgorithm`]. jsonwebtoken refuses them too, but an algorithm it has no
/// variant for (notably `none`) surfaces there as a JSON error, indistinguishable from garbage.
fn check_algorithm(token: &str) -> Result<(), AuthError> {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }

    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let header: AlgOnly = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    if header.alg == ALGORITHM_NAME {
        Ok(())
    } else {
        Err(AuthError::WrongAlgorithm)
    }
}

/// Turns verified claims into a [`Principal`], enforcing the role rules.
fn principal_from(claims: Claims) -> Result<Principal, AuthError> {
    if claims.sub.trim().is_empty() {
        return Err(AuthError::MissingClaim("sub".to_owned()));
    }
    // The subject doubles as the customer id of a customer's orders: it must be one exactly
    // (no surrounding blanks, printable, at most 128 characters), or ownership checks would
    // compare two different strings.
    if order_domain::CustomerId::parse(claims.sub.clone())
        .map(String::from)
        .as_deref()
        != Ok(claims.sub.as_str())
    {
        return Err(AuthError::InvalidSubject);
    }
    if claims.roles.is_empty() {
        return Err(AuthError::InvalidRoles(
            "the token grants no roles".to_owned(),
        ));
    }
    let roles = claims
        .roles
        .iter()
        .map(|name| name.parse::<Role>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|err| AuthError::InvalidRoles(err.to_string()))?;
    Ok(Principal {
        subject: claims.sub,
        roles,
        store_ids: claims.store_ids,
        expires_at: claims.exp,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
    use secrecy::ExposeSecret as _;
    use serde::Serialize;
    use uuid::Uuid;

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

        let principal = verifier().verify(&token).unwrap();

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

        assert!(verifier().verify(&token).is_ok());
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

        assert_eq!(verifier().verify(&token), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_expired_within_the_leeway_is_still_accepted() {
        let claims = Claims {
            exp: get_current_timestamp() - 2,
            ..valid_claims()
        };

        assert!(verifier().verify(&sign(Algorithm::HS256, &claims)).is_ok());
    }

    #[test]
    fn a_token_used_before_its_nbf_is_refused() {
        let claims = Claims {
            nbf: Some(get_current_timestamp() + 600),
            ..valid_claims()
        };

        assert_eq!(
            verifier().verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let other = TokenMinter::new(&secret(), ISSUER, "billing-service").unwrap();
        let token = other.mint("alice", &[Role::Customer], &[], HOUR).unwrap();

        assert_eq!(verifier().verify(&token), Err(AuthError::WrongAudience));
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let other = TokenMinter::new(&secret(), "someone-else", AUDIENCE).unwrap();
        let token = other.mint("alice", &[Role::Customer], &[], HOUR).unwrap();

        assert_eq!(verifier().verify(&token), Err(AuthError::WrongIssuer));
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
            verifier().verify(&token_without_aud()),
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
            verifier().verify(&sign(Algorithm::HS256, &claims)),
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
            verifier().verify(&sign(Algorithm::HS256, &claims)),
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
            verifier().verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::MissingClaim("sub".to_owned()))
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_vec(&valid_claims()).unwrap());
        let token = format!("{header}.{payload}.");

        assert_eq!(verifier().verify(&token), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn a_token_signed_with_hs384_and_the_same_secret_is_refused() {
        let token = sign(Algorithm::HS384, &valid_claims());

        assert_eq!(verifier().verify(&token), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn jsonwebtoken_alone_also_refuses_an_hs384_token_under_an_hs256_validation() {
        // Defence in depth: our header pre-check is not the only guard.
        let token = sign(Algorithm::HS384, &valid_claims());
        let verifier = verifier();

        let result = jsonwebtoken::decode::<Claims>(&token, &verifier.key, &verifier.validation);

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

        assert_eq!(verifier().verify(&tampered), Err(AuthError::BadSignature));
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

        assert_eq!(
            verifier().verify(&parts.join(".")),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other_secret = random_secret();
        let other = TokenMinter::new(&other_secret, ISSUER, AUDIENCE).unwrap();
        let token = other.mint("alice", &[Role::Customer], &[], HOUR).unwrap();

        assert_eq!(verifier().verify(&token), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_token_with_an_unknown_role_is_refused() {
        let claims = Claims {
            roles: vec!["customer".to_owned(), "superuser".to_owned()],
            ..valid_claims()
        };

        let err = verifier()
            .verify(&sign(Algorithm::HS256, &claims))
            .unwrap_err();

        assert!(matches!(&err, AuthError::InvalidRoles(why) if why.contains("superuser")));
    }

    #[test]
    fn a_token_with_no_roles_is_refused() {
        let claims = Claims {
            roles: vec![],
            ..valid_claims()
        };

        assert!(matches!(
            verifier().verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::InvalidRoles(_))
        ));
    }

    #[test]
    fn a_token_without_a_roles_claim_is_refused() {
        let claims = serde_json::json!({
            "sub": "alice", "exp": get_current_timestamp() + 3600, "iss": ISSUER, "aud": AUDIENCE,
        });

        assert!(matches!(
            verifier().verify(&sign(Algorithm::HS256, &claims)),
            Err(AuthError::InvalidRoles(_))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
            assert_eq!(
                verifier().verify(token),
                Err(AuthError::Malformed),
                "{token}"
            );
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
        ];
        let codes: BTreeSet<_> = all.iter().map(AuthError::code).collect();

        assert_eq!(codes.len(), all.len());
    }
}
