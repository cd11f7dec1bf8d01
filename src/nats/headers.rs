//! Headers of every contract message: `Nats-Msg-Id` (dedupe), W3C `traceparent`, CloudEvents
//! binary-mode attributes (`ce-specversion`, `ce-id`, `ce-type`, `ce-source`, `ce-time`) and
//! `Content-Type`.

use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};

/// `ce-source` of everything this service publishes.
pub const SOURCE: &str = "order-service";

/// What one message says about itself.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// Dedupe key and CloudEvents id.
    pub id: &'a str,
    /// CloudEvents type, e.g. `orders.OrderPlaced` or `inventory.commands.reserve`.
    pub kind: &'a str,
    pub source: &'a str,
    pub time: DateTime<Utc>,
    pub traceparent: Option<&'a str>,
}

/// The header map for `envelope`. Headers are set before any `message_id` helper of
/// async-nats could overwrite them (a later `.headers(..)` replaces an earlier message id).
pub fn build(envelope: &Envelope<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", envelope.id);
    h.insert("Content-Type", "application/json");
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", envelope.id);
    h.insert("ce-type", envelope.kind);
    h.insert("ce-source", envelope.source);
    h.insert(
        "ce-time",
        envelope
            .time
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .as_str(),
    );
    if let Some(tp) = envelope.traceparent {
        h.insert("traceparent", tp);
    }
    h
}

/// Reads a header as text.
pub fn get<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(async_nats::HeaderValue::as_str)
}
