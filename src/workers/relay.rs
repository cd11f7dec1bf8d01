//! The relay: a log reader that publishes every order event to `ORDER_EVENTS` (without the
//! customer's personal data unless configured: every subscriber of the stream gets it) and every saga
//! `...Requested` event as the participant command it carries to `SAGA_COMMANDS`, with
//! `Nats-Msg-Id = event_id`. The checkpoint advances only after JetStream acked the whole batch,
//! and is written at most every 100 ms (and when idle or stopping), so a crash re-publishes at
//! most that much, which JetStream drops as duplicates (the duplicate window outlasts any
//! restart).

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use order_domain::PERSONAL_DATA_FIELDS;
use sqlx::PgConnection;
use tracing::Instrument as _;

use crate::log::{Aggregate, Checkpoints, Decoded, LogEvent, LogHandler, ReaderConfig};
use crate::nats::headers::{self, Envelope};
use crate::nats::{Nats, ORDER_EVENTS, SAGA_COMMANDS};
use crate::telemetry::{trace_context, Metrics};

/// Name of the relay's reader.
pub const READER: &str = "relay";

#[derive(Debug, Clone)]
pub struct Relay {
    pub nats: Nats,
    pub metrics: Arc<Metrics>,
    /// Publish the customer's email and shipping address too (`APP__NATS__PUBLISH_PERSONAL_DATA`).
    pub personal_data: bool,
}

/// Where the relay sends an event, if anywhere: every order event to `ORDER_EVENTS`, every saga
/// event that carries a participant command to `SAGA_COMMANDS`. [`Relay`] publishes by this
/// rule and `verify` (I8) judges the streams by it.
pub fn destination(event: &Decoded) -> Option<&'static str> {
    match event {
        Decoded::Order { .. } => Some(ORDER_EVENTS),
        Decoded::Saga { event, .. } => event.change.participant_command().map(|_| SAGA_COMMANDS),
        Decoded::Other => None,
    }
}

/// One message to publish.
struct Outgoing {
    stream: &'static str,
    subject: String,
    headers: async_nats::HeaderMap,
    body: Bytes,
    /// The producer span, from the publish to JetStream's ack.
    span: tracing::Span,
}

/// A producer span (OTel messaging conventions) continuing the trace the event was written in;
/// the message's `traceparent` names it.
fn publish_span(name: &str, subject: &str, id: &str, stored: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "nats.publish",
        otel.name = format!("publish {name}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation = "publish",
        messaging.operation.name = "publish",
        messaging.operation.type = "send",
        messaging.destination.name = subject,
        messaging.message.id = id,
    );
    trace_context::continue_trace(&span, stored);
    span
}

impl Relay {
    /// Its reader's configuration: every event; no transaction per batch.
    pub fn config() -> ReaderConfig {
        ReaderConfig::new(READER).checkpointing(Checkpoints::IDEMPOTENT)
    }

    fn outgoing(&self, e: &LogEvent) -> anyhow::Result<Option<Outgoing>> {
        let stored = e
            .metadata
            .get("traceparent")
            .and_then(serde_json::Value::as_str);
        let id = e.event_id.to_string();
        match e.aggregate {
            Aggregate::Order(order_id) => {
                let kind = format!("orders.{}", e.event_type);
                // The event's own fields, plus where it belongs: subscribers need no lookup.
                let mut body = e.payload.clone();
                if let Some(map) = body.as_object_mut() {
                    if !self.personal_data {
                        for field in PERSONAL_DATA_FIELDS {
                            map.remove(field);
                        }
                    }
                    map.insert("order_id".into(), order_id.to_string().into());
                    map.insert("version".into(), e.sequence.into());
                    map.insert("event_id".into(), id.clone().into());
                    map.insert("recorded_at".into(), e.recorded_at.to_rfc3339().into());
                }
                let subject = self
                    .nats
                    .subject(&format!("orders.events.{order_id}.{}", e.event_type));
                let span = publish_span(&kind, &subject, &id, stored);
                let traceparent = trace_context::pass_on(&span, stored);
                Ok(Some(Outgoing {
                    stream: ORDER_EVENTS,
                    headers: headers::build(&Envelope {
                        id: &id,
                        kind: &kind,
                        source: headers::SOURCE,
                        time: e.recorded_at,
                        traceparent: traceparent.as_deref(),
                    }),
                    subject,
                    body: Bytes::from(serde_json::to_vec(&body)?),
                    span,
                }))
            }
            Aggregate::Saga(_) => {
                let Decoded::Saga { event, .. } = e.decode()? else {
                    anyhow::bail!("event {} is not a saga's", e.event_id);
                };
                let Some(command) = event.change.participant_command() else {
                    return Ok(None);
                };
                let subject = self.nats.subject(command.subject());
                let span = publish_span(command.subject(), &subject, &id, stored);
                let traceparent = trace_context::pass_on(&span, stored);
                Ok(Some(Outgoing {
                    stream: SAGA_COMMANDS,
                    headers: headers::build(&Envelope {
                        id: &id,
                        kind: command.subject(),
                        source: headers::SOURCE,
                        time: e.recorded_at,
                        traceparent: traceparent.as_deref(),
                    }),
                    subject,
                    body: Bytes::from(command.to_json()?),
                    span,
                }))
            }
            Aggregate::Malformed => anyhow::bail!(
                "event {} of {} has a malformed id {:?}",
                e.event_id,
                e.aggregate_type,
                e.aggregate_id
            ),
            Aggregate::Other => Ok(None),
        }
    }
}

impl LogHandler for Relay {
    async fn handle(&mut self, _tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        // Send the whole batch, then wait for every ack: one round of acks per batch, and the
        // order of messages on each subject is the log order.
        let mut pending = Vec::new();
        for e in batch {
            let Some(out) = self.outgoing(e)? else {
                continue;
            };
            let ack = self
                .nats
                .js
                .publish_with_headers(out.subject.clone(), out.headers, out.body)
                .instrument(out.span.clone())
                .await
                .with_context(|| format!("publishing {}", out.subject));
            match ack {
                Ok(ack) => pending.push((out.stream, out.subject, ack, out.span)),
                Err(err) => {
                    out.span.record("otel.status_code", "error");
                    self.metrics
                        .nats
                        .published
                        .with_label_values(&[out.stream, "error"])
                        .inc();
                    return Err(err);
                }
            }
        }
        for (stream, subject, ack, span) in pending {
            match std::future::IntoFuture::into_future(ack)
                .instrument(span.clone())
                .await
            {
                Ok(ack) => {
                    let outcome = if ack.duplicate { "duplicate" } else { "stored" };
                    self.metrics
                        .nats
                        .published
                        .with_label_values(&[stream, outcome])
                        .inc();
                }
                Err(err) => {
                    span.record("otel.status_code", "error");
                    self.metrics
                        .nats
                        .published
                        .with_label_values(&[stream, "error"])
                        .inc();
                    return Err(anyhow::anyhow!("JetStream did not ack {subject}: {err}"));
                }
            }
        }
        Ok(())
    }
}
