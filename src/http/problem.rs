//! One error type for the API and one mapping to RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]; everything else that can go wrong before a handler runs
//! (poem's 404/405/413, poem-openapi's parse, content-type and authorization errors) reaches
//! [`ProblemEndpoint`], the one outer wrapper that renders every error as a problem document.
//! It sits inside the request-id layer so error responses carry `x-request-id` too.

use std::fmt;

use order_domain::{OrderError, ValueError};
use poem::error::{ResponseError, SizedLimitError};
use poem::http::{header, HeaderValue, StatusCode};
use poem::middleware::ReqId;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::{ToJSON as _, Type as _};
use poem_openapi::{ApiResponse, Object, OperationId};

use super::allowed::AllowedMethods;
use super::auth::AuthError;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// RFC 9457 problem details. `type` names the broken rule; it is stable and documented in
/// `docs/problems.md`.
#[derive(Debug, Clone, Object)]
pub struct ProblemDetails {
    /// URI reference naming the rule, e.g. `/problems/illegal-transition`.
    #[oai(rename = "type")]
    pub type_uri: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code (100 to 599).
    #[oai(validator(minimum(value = "100"), maximum(value = "599")))]
    pub status: i32,
    /// What went wrong with this request, for a human.
    pub detail: String,
    /// The request this answers (`x-request-id`).
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<String>,
    /// Field-level problems of a rejected body or query; absent when there are none.
    #[oai(default, skip_serializing_if_is_empty)]
    pub errors: Vec<FieldProblem>,
}

/// One invalid field.
#[derive(Debug, Clone, Object)]
pub struct FieldProblem {
    /// JSON pointer-like path of the field (`items[2].quantity`).
    pub field: String,
    /// The rule it broke.
    pub message: String,
}

impl FieldProblem {
    /// `field` broke the rule of `err`.
    pub fn of(field: impl Into<String>, err: &ValueError) -> Self {
        Self {
            field: field.into(),
            message: err.to_string(),
        }
    }
}

/// Every way a request can fail. Each variant's doc comment says its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or a parameter could not be parsed.
    #[error("{detail}")]
    BadRequest { slug: &'static str, detail: String },
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(AuthError),
    /// 403: authenticated, but this role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not see.
    #[error("{detail}")]
    NotFound { slug: &'static str, detail: String },
    /// 406: the client accepts none of the representations the resource has.
    #[error("{detail}")]
    NotAcceptable { detail: String },
    /// 409 / 404 / 422: a business rule refused the command.
    #[error(transparent)]
    Refused(#[from] OrderError),
    /// 409: too many concurrent writers on one order; retry after the given seconds.
    #[error("the order changed concurrently too many times; retry the request")]
    Conflict { retry_after_secs: u32 },
    /// 409: a catalog entity already exists.
    #[error("{detail}")]
    AlreadyExists { slug: &'static str, detail: String },
    /// 410: what the client asks to resume from is no longer served (`resume-too-old`).
    #[error("{detail}")]
    Gone { slug: &'static str, detail: String },
    /// 429: the caller (or the subject it acts on) is over a rate or an open-feed cap; retry
    /// after the given seconds.
    #[error("{detail}")]
    TooManyRequests {
        slug: &'static str,
        detail: String,
        retry_after_secs: u64,
    },
    /// 412: `If-Match` named another version.
    #[error("the order is at version {actual}, not {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
    /// 422: the request is well-formed but its values break a rule.
    #[error("{detail}")]
    Invalid {
        slug: &'static str,
        detail: String,
        errors: Vec<FieldProblem>,
    },
    /// 503: a dependency (database) is unavailable.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 503: the service is still starting (waiting for its database or NATS) or has begun to
    /// stop; retry after 1 s, here or at another replica.
    #[error("{detail}")]
    Starting { detail: String },
    /// 503: the read model of an order did not reach the wanted version within the bounded
    /// wait (`at` is where it stands, 0 when it has not seen the order yet); retry after 1 s.
    #[error("the read model of order {order_id} is at version {at}, not yet at version {wanted}; retry shortly")]
    ProjectionBehind {
        order_id: uuid::Uuid,
        at: u64,
        wanted: u64,
    },
    /// 500: a bug or an unexpected failure; logged with its cause chain, answered generically.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// 422 for one invalid field.
    pub fn invalid_field(field: impl Into<String>, err: &ValueError) -> Self {
        Self::Invalid {
            slug: "validation-failed",
            detail: "the request has invalid values".into(),
            errors: vec![FieldProblem {
                field: field.into(),
                message: err.to_string(),
            }],
        }
    }

    /// 422 for several invalid fields at once.
    pub fn invalid_fields(errors: Vec<FieldProblem>) -> Self {
        Self::Invalid {
            slug: "validation-failed",
            detail: format!("the request has {} invalid value(s)", errors.len()),
            errors,
        }
    }

    /// An infrastructure failure: 503 when the database is out of reach (the client may retry),
    /// 500 otherwise.
    pub fn infra(e: anyhow::Error) -> Self {
        if crate::store::is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    pub fn order_not_found() -> Self {
        Self::Refused(OrderError::NotFound)
    }

    fn status_and_slug(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { slug, .. } => (StatusCode::BAD_REQUEST, slug),
            Self::Unauthorized(e) => (StatusCode::UNAUTHORIZED, e.code()),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound { slug, .. } => (StatusCode::NOT_FOUND, slug),
            Self::NotAcceptable { .. } => (StatusCode::NOT_ACCEPTABLE, "not-acceptable"),
            Self::Refused(e) => (refusal_status(e), e.code()),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "concurrent-modification"),
            Self::AlreadyExists { slug, .. } => (StatusCode::CONFLICT, slug),
            Self::VersionMismatch { .. } => (StatusCode::PRECONDITION_FAILED, "version-mismatch"),
            Self::Gone { slug, .. } => (StatusCode::GONE, slug),
            Self::TooManyRequests { slug, .. } => (StatusCode::TOO_MANY_REQUESTS, slug),
            Self::Invalid { slug, .. } => (StatusCode::UNPROCESSABLE_ENTITY, slug),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "service-unavailable"),
            Self::ProjectionBehind { .. } => (StatusCode::SERVICE_UNAVAILABLE, "projection-behind"),
            Self::Starting { .. } => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> ProblemDetails {
        let (status, slug) = self.status_and_slug();
        ProblemDetails {
            type_uri: format!("/problems/{slug}"),
            title: title_of(slug),
            status: i32::from(status.as_u16()),
            detail: self.to_string(),
            instance: None,
            errors: match self {
                Self::Invalid { errors, .. } => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

/// Domain refusals: a missing thing is 404, a wrong state is 409, a wrong value is 422.
fn refusal_status(e: &OrderError) -> StatusCode {
    match e {
        OrderError::NotFound | OrderError::LineNotFound { .. } => StatusCode::NOT_FOUND,
        OrderError::AlreadyExists
        | OrderError::ItemsLocked { .. }
        | OrderError::IllegalTransition { .. } => StatusCode::CONFLICT,
        OrderError::StatusNotSettable { .. }
        | OrderError::EmptyOrder
        | OrderError::TooManyLines { .. }
        | OrderError::TooManyChanges { .. }
        | OrderError::UnknownSku { .. }
        | OrderError::ProductInactive { .. }
        | OrderError::CurrencyMismatch { .. }
        | OrderError::QuantityTooLarge { .. }
        | OrderError::AmountTooLarge
        | OrderError::IdempotencyKeyReused
        | OrderError::StoreClosed => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// "illegal-transition" → "Illegal transition".
fn title_of(slug: &str) -> String {
    let mut title = slug.replace('-', " ");
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    title
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status_and_slug().0
    }

    fn as_response(&self) -> Response {
        self.to_response(None)
    }
}

impl ApiError {
    /// Renders the problem response, with `instance` naming the request when known.
    pub fn to_response(&self, request_id: Option<&str>) -> Response {
        match self {
            Self::Internal(e) | Self::Unavailable(e) => {
                tracing::error!(error = ?e, "request failed");
            }
            _ => {}
        }
        let mut problem = self.problem();
        problem.instance = request_id.map(instance_of);
        let mut response = problem_response(&problem);
        match self {
            Self::Unauthorized(e) => {
                // RFC 6750 §3.1: no error code when the request carried no credentials.
                let challenge = if *e == AuthError::Missing {
                    "Bearer realm=\"order-service\"".to_owned()
                } else {
                    format!(
                        "Bearer realm=\"order-service\", error=\"invalid_token\", error_description=\"{}\"",
                        self.to_string().replace('"', "'")
                    )
                };
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Self::Conflict { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::TooManyRequests {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Unavailable(_) | Self::ProjectionBehind { .. } | Self::Starting { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        response
    }
}

fn problem_response(problem: &ProblemDetails) -> Response {
    let body = problem.to_json_string();
    Response::builder()
        .status(
            u16::try_from(problem.status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .content_type(PROBLEM_JSON)
        .body(body)
}

/// Documents the problem responses of every operation in the OpenAPI spec.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let mut statuses: [(u16, &'static str); 13] = [
            (400, "Malformed request (problem+json)"),
            (401, "Missing or invalid bearer token (problem+json)"),
            (403, "Role not allowed (problem+json)"),
            (
                404,
                "Not found, or not visible to the caller (problem+json)",
            ),
            (
                409,
                "State conflict or concurrent modification (problem+json)",
            ),
            (412, "If-Match version mismatch (problem+json)"),
            (413, "Body too large (problem+json)"),
            (415, "Unsupported media type (problem+json)"),
            (
                422,
                "A business or validation rule was broken (problem+json)",
            ),
            (
                406,
                "None of the accepted media types is available (problem+json)",
            ),
            (
                429,
                "Over a rate limit; retry after `Retry-After` seconds (problem+json)",
            ),
            (
                500,
                "Unexpected failure, logged with the request id (problem+json)",
            ),
            (503, "Dependency unavailable (problem+json)"),
        ];
        statuses.sort_unstable_by_key(|(status, _)| *status);
        MetaResponses {
            responses: statuses
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_JSON,
                        schema: ProblemDetails::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ProblemDetails::register(registry);
    }
}

/// Wraps the whole API: every error, from a handler or from the framework, leaves as
/// problem+json with the request id in `instance`; a 405 names the methods the path answers in
/// `Allow`.
#[derive(Debug)]
pub struct ProblemEndpoint<E>(pub E, pub AllowedMethods);

impl<E: Endpoint> Endpoint for ProblemEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let request_id = req.data::<ReqId>().map(ToString::to_string);
        let path = req.uri().path().to_owned();
        Ok(match self.0.call(req).await {
            Ok(output) => output.into_response(),
            Err(err) => {
                let mut response = error_response(&err, request_id.as_deref());
                if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allow) = self.1.for_path(&path) {
                        if let Ok(v) = HeaderValue::from_str(allow) {
                            response.headers_mut().insert(header::ALLOW, v);
                        }
                    }
                }
                // Keep the operation id for the metrics layer outside.
                if let Some(op) = err.data::<OperationId>() {
                    response.set_data(*op);
                }
                response
            }
        })
    }
}

/// Framework errors that never passed through a handler, mapped to problems.
fn error_response(err: &poem::Error, request_id: Option<&str>) -> Response {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.to_response(request_id);
    }
    let status = err.status();
    let (slug, detail) = if err.is::<poem_openapi::error::AuthorizationError>() {
        return ApiError::Unauthorized(AuthError::Missing).to_response(request_id);
    } else if let Some(e) = err.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
        ("invalid-body", e.reason.clone())
    } else if let Some(e) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        // the headers keep the problem types they had when the handler checked them
        let slug = match e.name {
            "Idempotency-Key" => "invalid-idempotency-key",
            "If-Match" => "invalid-if-match",
            _ => "invalid-parameter",
        };
        (slug, format!("parameter `{}`: {}", e.name, e.reason))
    } else if let Some(e) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
        (
            "invalid-parameter",
            format!("path `{}`: {}", e.name, e.reason),
        )
    } else if err.is::<poem_openapi::error::ContentTypeError>() {
        (
            "unsupported-media-type",
            format!("{err}; send application/json"),
        )
    } else if err.is::<SizedLimitError>() || status == StatusCode::PAYLOAD_TOO_LARGE {
        (
            "body-too-large",
            "the request body exceeds the size limit".to_owned(),
        )
    } else if status == StatusCode::REQUEST_TIMEOUT {
        (
            "request-timeout",
            "the request body did not arrive in time".to_owned(),
        )
    } else if status == StatusCode::NOT_FOUND {
        ("not-found", "no such resource".to_owned())
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        (
            "method-not-allowed",
            "this resource does not support that method".to_owned(),
        )
    } else if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
        ("internal-error", "internal error".to_owned())
    } else {
        ("bad-request", err.to_string())
    };
    problem_response(&ProblemDetails {
        type_uri: format!("/problems/{slug}"),
        title: title_of(slug),
        status: i32::from(status.as_u16()),
        detail,
        instance: request_id.map(instance_of),
        errors: Vec::new(),
    })
}

fn instance_of(request_id: &str) -> String {
    format!("urn:request:{request_id}")
}

impl fmt::Display for ProblemDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.type_uri, self.detail)
    }
}
