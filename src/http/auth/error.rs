//! Why a request was not authenticated: [`AuthError`], one variant per broken rule, each
//! answered 401 with its own problem type.

use jsonwebtoken::errors::ErrorKind;

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
    /// The signature does not match the payload under the configured secret or key.
    #[error("the token signature is invalid")]
    BadSignature,
    /// HS256 mode: the token is not signed with HS256 (this includes `alg: none`).
    #[error("the token must be signed with HS256; other algorithms, including none, are refused")]
    WrongAlgorithm,
    /// JWKS mode: the token is signed with HS256, `none` or another algorithm than RS256,
    /// ES256 and EdDSA.
    #[error("the token must be signed by the identity provider with RS256, ES256 or EdDSA; HS256 and none are refused while a JWKS is configured")]
    AlgorithmNotAccepted,
    /// JWKS mode: the token's `alg` is not the one its key is pinned to.
    #[error("the token's alg is {token}, but its key is {key}: a key verifies one algorithm only")]
    KeyAlgorithmMismatch {
        /// What the token header says.
        token: String,
        /// What the key is pinned to.
        key: String,
    },
    /// JWKS mode: the token header names no key.
    #[error("the token header has no kid; the identity provider's tokens name their signing key")]
    MissingKeyId,
    /// JWKS mode: the token's `kid` is not among the provider's keys, even after a refresh.
    #[error("the token's kid names no key of the identity provider's JWKS (checked again after a refresh)")]
    UnknownKey,
    /// The token lives longer than the configured maximum.
    #[error("the token lives longer than the {max_secs} seconds this service accepts (exp - iat, and exp - now); ask the issuer for shorter-lived tokens")]
    LifetimeTooLong {
        /// The configured maximum, in seconds.
        max_secs: u64,
    },
    /// The token's `iss` is not the configured issuer.
    #[error("the token was issued by an issuer this service does not trust")]
    WrongIssuer,
    /// The token's `aud` is not this service.
    #[error("the token is not intended for this service (wrong aud)")]
    WrongAudience,
    /// The `sub` is not usable as a customer id.
    #[error("the token's sub must be 1-128 printable characters without surrounding blanks")]
    InvalidSubject,
    /// A required claim is absent (or empty, for `sub`).
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    /// The roles claim is missing at its configured path, grants none of our roles, or (own
    /// tokens) names an unknown role.
    #[error("the token's roles claim is invalid: {0}")]
    InvalidRoles(String),
    /// The store ids claim holds something else than store UUIDs.
    #[error("the token's store ids claim is invalid: {0}")]
    InvalidStoreIds(String),
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
            AuthError::AlgorithmNotAccepted => "algorithm-not-accepted",
            AuthError::KeyAlgorithmMismatch { .. } => "key-algorithm-mismatch",
            AuthError::MissingKeyId => "missing-kid",
            AuthError::UnknownKey => "unknown-kid",
            AuthError::LifetimeTooLong { .. } => "token-lifetime-too-long",
            AuthError::WrongIssuer => "wrong-issuer",
            AuthError::WrongAudience => "wrong-audience",
            AuthError::MissingClaim(_) => "missing-claim",
            AuthError::InvalidRoles(_) => "invalid-roles",
            AuthError::InvalidStoreIds(_) => "invalid-store-ids",
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
            // Key failures (a signature of the wrong shape for its key, say) refuse the token
            // (fail closed) and leave a trace for operators.
            _ => {
                tracing::warn!(error = %err, "unexpected JWT verification failure");
                AuthError::BadSignature
            }
        }
    }
}
