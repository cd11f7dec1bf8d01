//! Minting tokens: [`TokenMinter`] makes the HS256 tokens a verifier with the same settings
//! accepts (for `order-service token` and for tests), and [`random_secret`] a fresh key.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use rand::Rng as _;
use secrecy::SecretString;
use uuid::Uuid;

use super::principal::Role;
use super::token::{checked_settings, AuthConfigError, Claims, ALGORITHM};

/// Random bytes in a secret made by [`random_secret`].
const RANDOM_SECRET_BYTES: usize = 48;

/// Mints HS256 tokens that a [`JwtVerifier`] with the same settings accepts.
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("key", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenMinter {
    /// Builds a minter; same rules as [`JwtVerifier::new`].
    pub fn new(
        secret: &SecretString,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthConfigError> {
        let key = EncodingKey::from_secret(checked_settings(secret, issuer, audience)?);
        Ok(Self {
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Mints a token for `subject` with `roles` and `store_ids`, valid for `ttl` from now.
    pub fn mint(
        &self,
        subject: &str,
        roles: &[Role],
        store_ids: &[Uuid],
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.mint_at(
            jsonwebtoken::get_current_timestamp(),
            subject,
            roles,
            store_ids,
            ttl,
        )
    }

    /// [`TokenMinter::mint`] with an explicit clock, so tests can mint tokens in the past.
    pub(super) fn mint_at(
        &self,
        now: u64,
        subject: &str,
        roles: &[Role],
        store_ids: &[Uuid],
        ttl: Duration,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(!subject.trim().is_empty(), "a token needs a subject");
        anyhow::ensure!(!roles.is_empty(), "a token needs at least one role");
        let exp = now
            .checked_add(ttl.as_secs())
            .context("token lifetime overflows the clock")?;
        let claims = Claims {
            sub: subject.to_owned(),
            exp,
            iat: Some(now),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            roles: roles.iter().map(ToString::to_string).collect(),
            store_ids: store_ids.to_vec(),
        };
        jsonwebtoken::encode(&Header::new(ALGORITHM), &claims, &self.key)
            .context("failed to sign the token")
    }
}

/// A fresh secret: 48 random bytes, base64url-encoded without padding (64 characters).
pub fn random_secret() -> SecretString {
    let mut bytes = [0_u8; RANDOM_SECRET_BYTES];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill(&mut bytes[..]);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
