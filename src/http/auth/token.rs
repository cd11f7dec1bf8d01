//! The token format minting and verification share: the one algorithm (HS256), the
//! [`Claims`] payload, and the checks on the configured secret, issuer and audience.

use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The only signing algorithm accepted or produced.
pub(super) const ALGORITHM: Algorithm = Algorithm::HS256;
/// Its name as it appears in a token header.
pub(super) const ALGORITHM_NAME: &str = "HS256";
/// Clock skew tolerated on `exp` and `nbf`, in seconds. Small on purpose: tokens are short-lived.
pub(super) const LEEWAY_SECS: u64 = 5;
/// Shortest accepted HMAC secret, in bytes: HS256 keys shorter than the hash output (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The JWT payload this service mints and accepts.
///
/// `sub`, `exp`, `iss` and `aud` default when absent only so that deserialization succeeds and
/// jsonwebtoken's own presence check (`required_spec_claims`) reports the precise missing claim;
/// a token lacking any of them never verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who the token speaks for.
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default)]
    pub exp: u64,
    /// Issued-at, seconds since the Unix epoch. Informational; always set by [`TokenMinter`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not-before, seconds since the Unix epoch; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer; must equal the configured issuer.
    #[serde(default)]
    pub iss: String,
    /// Audience; must equal the configured audience. Only the single-string form is accepted.
    #[serde(default)]
    pub aud: String,
    /// Role names; a non-empty subset of [`Role`] names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Stores a staff member may act on.
    #[serde(default)]
    pub store_ids: Vec<Uuid>,
}

/// A verifier or minter could not be built from the configured settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// The HMAC secret is too short to resist brute force.
    #[error("the JWT secret is {actual} bytes; at least {MIN_SECRET_BYTES} are required")]
    SecretTooShort {
        /// Length of the secret that was given, in bytes.
        actual: usize,
    },
    /// The issuer is empty.
    #[error("the JWT issuer must not be empty")]
    EmptyIssuer,
    /// The audience is empty.
    #[error("the JWT audience must not be empty")]
    EmptyAudience,
}

/// Checks the settings shared by [`JwtVerifier`] and [`TokenMinter`]; returns the key bytes.
pub(super) fn checked_settings<'a>(
    secret: &'a SecretString,
    issuer: &str,
    audience: &str,
) -> Result<&'a [u8], AuthConfigError> {
    let bytes = secret.expose_secret().as_bytes();
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(AuthConfigError::SecretTooShort {
            actual: bytes.len(),
        });
    }
    if issuer.is_empty() {
        return Err(AuthConfigError::EmptyIssuer);
    }
    if audience.is_empty() {
        return Err(AuthConfigError::EmptyAudience);
    }
    Ok(bytes)
}
