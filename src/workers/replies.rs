//! The reply consumer: a durable pull consumer on `SAGA_REPLIES`, shared by every replica
//! (JetStream hands each message to one of them). A reply is acked only after the saga command
//! it caused committed; replies the saga refuses are counted and acked.
//!
//! Two kinds of failure are told apart, because only one of them is the message's fault:
//! * a reply that can **never** be processed (unparseable, outside the contract) goes to the
//!   dead-letter stream (`dead.replies.<kind>`) with a metric and a log line, and only once it
//!   is stored there is it terminated; if even the dead-letter publish fails, it is nak'd so it
//!   is not lost;
//! * a **transient** failure (the store unreachable, a pool timeout, too many concurrent
//!   writers) naks the reply with a growing delay, as often as it takes: the delivery count
//!   never turns a valid reply into a dead letter. For the same reason the consumer has no
//!   `max_deliver`: the server must never stop redelivering on its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;
use order_domain::OrderId;
use order_sagas::{Reply, SagaCommand, SagaError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backoff::Backoff;
use crate::nats::headers::{self, Envelope};
use crate::nats::metrics::ConsumerRef;
use crate::nats::{Nats, SAGA_REPLIES};
use crate::store::sagas::{SagaExecuteError, SagaRepository};
use crate::telemetry::{trace_context, Metrics};

#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub nats: Nats,
    pub sagas: Arc<SagaRepository>,
    pub metrics: Arc<Metrics>,
    /// How long a reply that met a transient failure waits for its next delivery (see
    /// [`redelivery_delay`]; without jitter, so a delivery's delay can be read back).
    pub retry: Backoff,
}

/// The `consumer` label of the reply consumer's NATS metrics (`nats_consumed_total`,
/// `nats_consumer_*_messages`).
pub const CONSUMER: &str = "saga-replies";

/// The durable consumer every replica shares on `nats`' replies stream (`deploy/nats/users.conf`
/// allows the service exactly this one), for [`ReplyConsumer::run`] and for the metrics.
pub fn consumer(nats: &Nats) -> ConsumerRef {
    let stream = nats.stream_name(SAGA_REPLIES);
    ConsumerRef {
        label: CONSUMER,
        durable: format!("{stream}_order_service"),
        stream,
    }
}

/// Every `outcome` of a delivery in `nats_consumed_total`, and every `cause` of
/// `saga_reply_transient_failures_total`: their series are made at 0 when the consumer starts,
/// so that the first dead letter or failure after a start is an increase a rule can see.
const OUTCOMES: [&str; 5] = [
    "processed",
    "ignored",
    "retried",
    "dead_lettered",
    "dead_letter_failed",
];
const CAUSES: [&str; 3] = ["conflict", "store", "dead_letter"];

/// The `saga_replies_ignored_total` reason of a reply that does not parse (beside the saga's
/// own [`order_sagas::IgnoredReason`] codes).
pub const MALFORMED: &str = "malformed";

/// Replies applied at once, at most: each needs a pooled connection for a moment, and the
/// pool (16 by default) also serves HTTP, the readers' LISTEN and the deadline worker.
const MAX_IN_FLIGHT: usize = 8;

/// The delay before the next delivery of a reply that could not be processed now, after its
/// `delivered`-th delivery (1 for the first) failed: `retry`'s waits, one per delivery, so it
/// grows with every delivery (from `first`, doubling, at most `max`) and never ends. Read from
/// the delivery count, not from state of this process, so it holds across replicas.
pub fn redelivery_delay(retry: &Backoff, delivered: i64) -> Duration {
    let attempt = u32::try_from(delivered.saturating_sub(1).max(0)).unwrap_or(u32::MAX);
    retry.delay(attempt)
}

/// What became of one delivery.
enum Outcome {
    Processed,
    Ignored,
    /// Failed for a reason that passes (`cause` is the metric label): deliver it again later.
    Retry {
        cause: &'static str,
        reason: String,
    },
    /// Can never be processed: dead-letter it.
    Dead(String),
}

impl ReplyConsumer {
    /// Consumes until `shutdown` is cancelled (then finishes and acks the replies it holds), or
    /// until the consumer fails: its supervisor creates it again.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        for outcome in OUTCOMES {
            self.metrics
                .nats
                .consumed
                .with_label_values(&[CONSUMER, outcome])
                .inc_by(0);
        }
        for cause in CAUSES {
            self.metrics
                .replies
                .transient_failures
                .with_label_values(&[cause])
                .inc_by(0);
        }
        let ConsumerRef {
            stream: stream_name,
            durable,
            ..
        } = consumer(&self.nats);
        let stream = self
            .nats
            .js
            .get_stream(&stream_name)
            .await
            .context("replies stream")?;
        // Create, or update a consumer left by an earlier version (which had `max_deliver: 8`
        // and so let the server drop replies after an outage).
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                // A reply takes milliseconds to process; a replica that died holding some
                // hands them to another after this.
                ack_wait: Duration::from_secs(5),
                // Unlimited: whether a reply is dead is decided here, by its content, never by
                // how often a failing database made it come back.
                max_deliver: -1,
                max_ack_pending: 1_000,
                ..Default::default()
            })
            .await
            .context("reply consumer")?;
        let mut messages = consumer.messages().await.context("reply messages")?;
        // Replies are handled concurrently: each saga command is serialized per order by the
        // saga store (and retried on conflict), and replies of one saga may arrive in any
        // order anyway. One at a time, the consumer capped the whole pipeline at what one
        // load-decide-append round trip allows (~120 sagas/s measured).
        let mut in_flight = FuturesUnordered::new();
        let outcome = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(e) = done {
                        break Err(e);
                    }
                }
                m = messages.next(), if in_flight.len() < MAX_IN_FLIGHT => match m {
                    Some(Ok(message)) => in_flight.push(self.handle(message)),
                    Some(Err(e)) => break Err(anyhow::anyhow!(e).context("receiving a reply")),
                    None => break Err(anyhow::anyhow!("reply message stream ended")),
                },
            }
        };
        // finish (and ack) what was started; unacked replies would come back after ack_wait
        while in_flight.next().await.is_some() {}
        outcome
    }

    /// One delivery of one reply, in a consumer span continuing the reply's trace (the
    /// participant's): apply it, then ack, nak or dead-letter it.
    async fn handle(&self, message: async_nats::jetstream::Message) -> anyhow::Result<()> {
        let delivered = message.info().map_or(1, |i| i.delivered);
        let kind = self
            .nats
            .unprefixed(message.subject.as_str())
            .unwrap_or("reply");
        let span = tracing::info_span!(
            "nats.process",
            otel.name = format!("process {kind}"),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation = "process",
            messaging.operation.type = "process",
            messaging.destination.name = message.subject.as_str(),
            messaging.consumer.group.name = "order_service",
            messaging.message.id = headers::get(message.headers.as_ref(), "Nats-Msg-Id"),
            messaging.message.delivery_count = delivered,
        );
        trace_context::continue_trace(&span, headers::get(message.headers.as_ref(), "traceparent"));
        self.settle(message, delivered).instrument(span).await
    }

    async fn settle(
        &self,
        message: async_nats::jetstream::Message,
        delivered: i64,
    ) -> anyhow::Result<()> {
        let (label, ack) = match self.process(&message).await {
            Outcome::Processed => ("processed", AckKind::Ack),
            Outcome::Ignored => ("ignored", AckKind::Ack),
            Outcome::Retry { cause, reason } => {
                let delay = redelivery_delay(&self.retry, delivered);
                self.metrics
                    .replies
                    .transient_failures
                    .with_label_values(&[cause])
                    .inc();
                tracing::warn!(subject = %message.subject, delivered, reason, ?delay, "reply could not be applied now; it will be delivered again");
                ("retried", AckKind::Nak(Some(delay)))
            }
            Outcome::Dead(reason) => match self.dead_letter(&message, &reason).await {
                Ok(()) => ("dead_lettered", AckKind::Term),
                Err(e) => {
                    // Not stored anywhere else yet: keep it in the replies stream.
                    let delay = redelivery_delay(&self.retry, delivered);
                    self.metrics
                        .replies
                        .transient_failures
                        .with_label_values(&["dead_letter"])
                        .inc();
                    tracing::error!(subject = %message.subject, delivered, reason, error = format!("{e:#}"), ?delay, "reply could not be dead-lettered; it will be delivered again");
                    ("dead_letter_failed", AckKind::Nak(Some(delay)))
                }
            },
        };
        if !matches!(ack, AckKind::Ack) {
            // the consumer span (current): this delivery did not settle the reply
            tracing::Span::current().record("otel.status_code", "error");
        }
        self.metrics
            .nats
            .consumed
            .with_label_values(&[CONSUMER, label])
            .inc();
        message
            .ack_with(ack)
            .await
            .map_err(|e| anyhow::anyhow!("acking a reply: {e}"))
    }

    async fn process(&self, message: &async_nats::jetstream::Message) -> Outcome {
        let Some(subject) = self.nats.unprefixed(message.subject.as_str()) else {
            return Outcome::Dead(format!(
                "subject {} lacks this deployment's prefix",
                message.subject
            ));
        };
        let reply = match Reply::parse(subject, &message.payload) {
            Ok(reply) => reply,
            Err(e) => {
                // Outside the contract (a required field missing, such as an authorization
                // without its amount): believed by no saga, so counted with the ignored ones.
                self.metrics
                    .store
                    .saga_replies_ignored
                    .with_label_values(&[MALFORMED])
                    .inc();
                return Outcome::Dead(format!("unparseable reply: {e}"));
            }
        };
        let order = OrderId::from_uuid(reply.saga_id().as_uuid());
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("causation_id".to_owned(), reply.message_id().to_string());
        metadata.insert(
            "principal".to_owned(),
            subject
                .split('.')
                .next()
                .unwrap_or("participant")
                .to_owned(),
        );
        // The saga step this reply drives: what it writes (the next command, or the verdict)
        // continues the trace from here.
        let step = tracing::info_span!(
            "saga.step",
            otel.name = format!("saga step {}", reply.kind()),
            order_id = %order,
            saga.reply = %reply.kind(),
        );
        if let Some(tp) =
            trace_context::pass_on(&step, headers::get(message.headers.as_ref(), "traceparent"))
        {
            metadata.insert("traceparent".to_owned(), tp);
        }
        let command = SagaCommand::HandleReply {
            reply,
            now: Utc::now(),
        };
        let executed = self
            .sagas
            .execute(order, &command, metadata)
            .instrument(step)
            .await;
        match executed {
            Ok(_) => Outcome::Processed,
            Err(SagaExecuteError::Refused(SagaError::ReplyIgnored { reason })) => {
                tracing::info!(%order, reason = reason.code(), "reply ignored");
                Outcome::Ignored
            }
            Err(SagaExecuteError::Refused(other)) => {
                tracing::info!(%order, refusal = %other, "reply refused");
                Outcome::Ignored
            }
            Err(SagaExecuteError::Conflict) => Outcome::Retry {
                cause: "conflict",
                reason: SagaExecuteError::Conflict.to_string(),
            },
            Err(e @ (SagaExecuteError::Store(_) | SagaExecuteError::Unavailable(_))) => {
                Outcome::Retry {
                    cause: "store",
                    reason: format!("{:#}", anyhow::Error::new(e)),
                }
            }
        }
    }

    /// Keeps a reply that can never be processed in `dead.replies.<kind>`, with its reason;
    /// `Ok` once JetStream stored it.
    async fn dead_letter(
        &self,
        message: &async_nats::jetstream::Message,
        reason: &str,
    ) -> anyhow::Result<()> {
        let kind = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or("unknown");
        let subject = self.nats.subject(&format!("dead.replies.{kind}"));
        // The stream sequence makes a second dead-lettering of the same reply (e.g. after a
        // lost ack) a duplicate JetStream drops.
        let id = format!("dead-{}", message.info().map_or(0, |i| i.stream_sequence));
        let mut h = headers::build(&Envelope {
            id: &id,
            kind: "order-service.dead-letter",
            source: headers::SOURCE,
            time: Utc::now(),
            traceparent: headers::get(message.headers.as_ref(), "traceparent"),
        });
        h.insert(
            "dead-letter-reason",
            reason.chars().take(500).collect::<String>().as_str(),
        );
        h.insert("dead-letter-subject", message.subject.as_str());
        self.nats
            .publish(subject, h, message.payload.clone())
            .await?;
        tracing::error!(subject = %message.subject, reason, "reply dead-lettered");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_per_delivery_up_to_the_maximum_and_never_ends() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let after = |delivered| redelivery_delay(&backoff, delivered);
        assert_eq!(after(1), Duration::from_millis(200));
        assert_eq!(after(2), Duration::from_millis(400));
        assert_eq!(after(4), Duration::from_millis(1_600));
        assert_eq!(after(9), Duration::from_secs(30));
        assert_eq!(after(i64::MAX), Duration::from_secs(30));
        assert_eq!(after(0), Duration::from_millis(200));
    }
}
