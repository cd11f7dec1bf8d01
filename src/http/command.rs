//! What every command request shares: the `Idempotency-Key` and `If-Match` headers, event
//! metadata from the request, and the translation of executor outcomes into API answers.

use order_domain::CommandMark;
use poem::middleware::ReqId;
use poem::Request;
use uuid::Uuid;

use super::auth::Principal;
use super::problem::ApiError;
use crate::store::executor::Failure;
use crate::store::orders::{EventMetadata, ExecuteError, Refusal};
use crate::telemetry::trace_context;

/// Namespace of every id this service derives with UUIDv5.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_722d_7365_7276_6963_652d_6964);

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;

/// A validated `Idempotency-Key` of one caller.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    raw: String,
    id: Uuid,
}

impl IdempotencyKey {
    /// Parses the header: 1-255 visible ASCII characters. The derived id is scoped to the
    /// caller, so two callers may use the same key.
    pub fn parse(principal: &Principal, raw: Option<String>) -> Result<Option<Self>, ApiError> {
        let Some(raw) = raw else { return Ok(None) };
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::BadRequest {
                slug: "invalid-idempotency-key",
                detail: format!("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"),
            });
        }
        let id = Uuid::new_v5(
            &ID_NAMESPACE,
            format!("{}\n{raw}", principal.id_namespace_key()).as_bytes(),
        );
        Ok(Some(Self { raw, id }))
    }

    /// The deterministic id derived from caller and key (also the id of an order it creates).
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The mark of this request: `operation` and `body` make the fingerprint, so the same key
    /// with a different request is recognised.
    pub fn mark(&self, operation: &str, body: &impl serde::Serialize) -> CommandMark {
        // Request DTOs are plain structs of strings and numbers: serializing cannot fail.
        let body = serde_json::to_string(body).expect("request bodies serialize");
        CommandMark {
            id: self.id,
            fingerprint: Uuid::new_v5(&ID_NAMESPACE, format!("{operation}\n{body}").as_bytes()),
        }
    }
}

/// Parses `If-Match`: the strong ETag `"<version>"` (a bare number is accepted too), or `*`
/// (no condition). Weak ETags are refused: RFC 9110 compares If-Match strongly.
pub fn parse_if_match(raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(raw) = raw.map(str::trim) else {
        return Ok(None);
    };
    if raw == "*" {
        return Ok(None);
    }
    let unquoted = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => raw,
    };
    match unquoted.parse::<u64>() {
        Ok(version) if unquoted.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(version)),
        _ => Err(ApiError::BadRequest {
            slug: "invalid-if-match",
            detail: "If-Match must be a (strong) ETag of this API, e.g. \"3\"".into(),
        }),
    }
}

/// The ETag of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Event metadata from the request: request id as correlation and causation, the caller, the
/// W3C trace context of the request's span, and the idempotency key.
pub fn metadata(
    req: &Request,
    principal: &Principal,
    key: Option<&IdempotencyKey>,
) -> EventMetadata {
    let request_id = req.data::<ReqId>().map(ToString::to_string);
    let correlation = req
        .header("x-correlation-id")
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
        .or_else(|| request_id.clone());
    EventMetadata {
        correlation_id: correlation,
        causation_id: request_id,
        principal: Some(principal.subject.clone()),
        // the request's own span (a child of the caller's trace, or a new trace's root)
        traceparent: trace_context::pass_on(&tracing::Span::current(), req.header("traceparent")),
        idempotency_key: key.map(|k| k.as_str().to_owned()),
    }
}

impl From<ExecuteError<ApiError>> for ApiError {
    fn from(e: ExecuteError<ApiError>) -> Self {
        match e {
            Failure::Refused(Refusal::Denied(e)) => e,
            Failure::Refused(Refusal::Order(e)) => ApiError::Refused(e),
            Failure::Refused(Refusal::VersionMismatch { expected, actual }) => {
                ApiError::VersionMismatch { expected, actual }
            }
            Failure::Conflict => ApiError::Conflict {
                retry_after_secs: 1,
            },
            Failure::Unavailable(e) => ApiError::Unavailable(e),
            Failure::Store(e) => ApiError::Internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_strong_etags_and_bare_versions_only() {
        assert_eq!(parse_if_match(None).ok(), Some(None));
        assert_eq!(parse_if_match(Some("*")).ok(), Some(None));
        assert_eq!(parse_if_match(Some("\"3\"")).ok(), Some(Some(3)));
        assert_eq!(parse_if_match(Some("3")).ok(), Some(Some(3)));
        for bad in ["W/\"3\"", "3\"", "\"3", "\"+3\"", "\"-1\"", "three", ""] {
            assert!(parse_if_match(Some(bad)).is_err(), "{bad}");
        }
    }
}
