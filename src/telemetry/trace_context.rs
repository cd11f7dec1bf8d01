//! The W3C trace context from hop to hop (DESIGN §11): a span continues the trace its input
//! names (an HTTP request's or a NATS message's `traceparent`, an event's metadata), and what
//! it writes or sends names the span itself. One trace thus links the HTTP request, the
//! events it caused, the relay's publishes, the participants, the replies and the saga steps.
//!
//! Spans get ids only through the OpenTelemetry layer (`telemetry::init`); where it is not
//! installed (in-process tests) a hop passes on the context it was given.

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Longest `traceparent` taken from outside (version 00 is 55 characters).
pub const MAX_TRACEPARENT: usize = 128;

/// Makes the trace named by `traceparent` the parent of `span`, which must not have been
/// entered yet. A missing, overlong or malformed one leaves `span` the root of a new trace.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|t| t.len() <= MAX_TRACEPARENT) else {
        return;
    };
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// `span` as a `traceparent`, for what it writes or sends; `None` without the OpenTelemetry
/// layer (or for a span it filtered out).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// What a hop running in `span` passes on: the span's own context, else the one it was given.
pub fn pass_on(span: &tracing::Span, given: Option<&str>) -> Option<String> {
    traceparent(span).or_else(|| {
        given
            .filter(|t| t.len() <= MAX_TRACEPARENT)
            .map(str::to_owned)
    })
}

/// The ids of `span`'s trace, as log lines carry them.
pub fn ids(context: &opentelemetry::Context) -> Option<(String, String)> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// Names `span` for OpenTelemetry once what names it is known (a route after routing),
/// whether or not the span has started.
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}
