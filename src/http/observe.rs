//! Per-request observation: a tracing span (with the W3C trace context of the caller when it
//! sends one) and the HTTP metrics, labelled by operation id rather than raw path so ids in
//! URLs do not explode label cardinality.

use std::sync::Arc;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OperationId;
use tracing::Instrument as _;

use crate::telemetry::{trace_context, Metrics};

/// Wraps the problem endpoint; sees every response, errors included.
#[derive(Debug)]
pub struct Observe<E> {
    inner: E,
    metrics: Arc<Metrics>,
}

impl<E> Observe<E> {
    pub fn new(inner: E, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<E: Endpoint> Endpoint for Observe<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let method = method_label(req.method());
        let path = req.uri().path().to_owned();
        // OTel HTTP server conventions; named "{method} {route}" once the route is known
        let span = tracing::info_span!(
            "http.request",
            otel.name = method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            url.path = %path,
            url.scheme = "http",
        );
        trace_context::continue_trace(&span, req.header("traceparent"));
        let response = self
            .inner
            .call(req)
            .instrument(span.clone())
            .await
            .map(IntoResponse::into_response)?;
        let route = response
            .data::<OperationId>()
            .map_or_else(|| fallback_route(&path), |op| op.0.to_owned());
        let status = response.status();
        trace_context::rename(&span, format!("{method} {route}"));
        span.record("http.route", route.as_str());
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
        self.metrics
            .http
            .requests
            .with_label_values(&[route.as_str(), method, status.as_str()])
            .inc();
        self.metrics
            .http
            .duration
            .with_label_values(&[route.as_str(), method])
            .observe(started.elapsed().as_secs_f64());
        if status.is_server_error() {
            tracing::warn!(parent: &span, %status, route, "request failed");
        }
        Ok(response)
    }
}

/// The method as a metric label: one of HTTP's own, else `other`, so a client inventing
/// methods (`curl -X RANDOM123`) cannot add series.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Longest `x-request-id` a client may choose.
pub const MAX_REQUEST_ID: usize = 64;

/// Keeps a client's `x-request-id` only when it is short and plain (letters, digits, `-`,
/// `_`, `.`, `:`, at most [`MAX_REQUEST_ID`]); otherwise drops it, so the request-id layer
/// inside makes a fresh one. The id is stored in every event's metadata: a client must not be
/// able to write kilobytes there, or anything a log viewer would interpret.
#[derive(Debug)]
pub struct PlainRequestId<E>(pub E);

impl<E: Endpoint> Endpoint for PlainRequestId<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let plain = |id: &str| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        };
        if req.header("x-request-id").is_some_and(|id| !plain(id)) {
            req.headers_mut().remove("x-request-id");
        }
        self.0.call(req).await
    }
}

/// Routes outside the OpenAPI service, by fixed prefix; anything else is "unmatched".
fn fallback_route(path: &str) -> String {
    match path {
        "/openapi.json" => "openapi".into(),
        p if p.starts_with("/v1/orders/") && p.ends_with("/live") => "orderLive".into(),
        p if p.starts_with("/v1/stores/") && p.ends_with("/live") => "storeLive".into(),
        p if p.starts_with("/docs") => "docs".into(),
        p if p.starts_with("/board/") => "board".into(),
        p if p.starts_with("/track/") => "track".into(),
        p if p.starts_with("/pages/") => "pages".into(),
        _ => "unmatched".into(),
    }
}
