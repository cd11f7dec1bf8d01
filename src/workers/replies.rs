//! The reply consumer: a durable pull consumer on `SAGA_REPLIES`, shared by every replica
//! (JetStream hands each message to one of them). A reply is acked only after the saga command
//! it caused committed; replies the saga refuses are counted and acked; a message that can
//! never be processed goes to the dead-letter stream (`dead.replies.<kind>`) with a metric and
//! a log line instead of blocking the others.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use chrono::Utc;
use futures::StreamExt as _;
use order_domain::OrderId;
use order_sagas::{Reply, SagaCommand, SagaError};
use tokio::sync::watch;

use crate::nats::headers::{self, Envelope};
use crate::nats::{Nats, SAGA_REPLIES};
use crate::store::sagas::{SagaExecuteError, SagaRepository};
use crate::telemetry::Metrics;

/// Deliveries of one reply before it is dead-lettered.
pub const MAX_DELIVER: i64 = 8;

#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub nats: Nats,
    pub sagas: Arc<SagaRepository>,
    pub metrics: Arc<Metrics>,
}

/// What became of one delivery.
enum Outcome {
    Processed,
    Ignored,
    Retry(String),
    Dead(String),
}

impl ReplyConsumer {
    /// Consumes until `shutdown`; reconnects the consumer after errors.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        while !*shutdown.borrow() {
            if let Err(e) = self.consume(&mut shutdown).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "reply consumer failed; restarting"
                );
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        tracing::info!("reply consumer stopped");
        Ok(())
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let stream_name = self.nats.stream_name(SAGA_REPLIES);
        let stream = self
            .nats
            .js
            .get_stream(&stream_name)
            .await
            .context("replies stream")?;
        let durable = format!("{stream_name}_order_service");
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    ack_policy: AckPolicy::Explicit,
                    // A reply takes milliseconds to process; a replica that died holding some
                    // hands them to another after this.
                    ack_wait: Duration::from_secs(5),
                    max_deliver: MAX_DELIVER,
                    max_ack_pending: 1_000,
                    ..Default::default()
                },
            )
            .await
            .context("reply consumer")?;
        let mut messages = consumer.messages().await.context("reply messages")?;
        loop {
            let message = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some(message) = message else {
                anyhow::bail!("reply message stream ended");
            };
            let message = message.context("receiving a reply")?;
            let delivered = message.info().map_or(1, |i| i.delivered);
            let outcome = self.process(&message).await;
            let (label, ack) = match &outcome {
                Outcome::Processed => ("processed", AckKind::Ack),
                Outcome::Ignored => ("ignored", AckKind::Ack),
                Outcome::Retry(_) if delivered < MAX_DELIVER => (
                    "retried",
                    AckKind::Nak(Some(Duration::from_millis(
                        200 * 2_u64.pow(u32::try_from(delivered.clamp(0, 6)).unwrap_or(6)),
                    ))),
                ),
                Outcome::Retry(reason) | Outcome::Dead(reason) => {
                    self.dead_letter(&message, reason).await;
                    ("dead_lettered", AckKind::Term)
                }
            };
            if let Outcome::Retry(reason) = &outcome {
                tracing::warn!(subject = %message.subject, delivered, reason, "reply will be retried");
            }
            self.metrics
                .nats_consumed
                .with_label_values(&["saga-replies", label])
                .inc();
            message
                .ack_with(ack)
                .await
                .map_err(|e| anyhow::anyhow!("acking a reply: {e}"))?;
        }
    }

    #[tracing::instrument(skip_all, fields(subject = %message.subject))]
    async fn process(&self, message: &async_nats::jetstream::Message) -> Outcome {
        let Some(subject) = self.nats.unprefixed(message.subject.as_str()) else {
            return Outcome::Dead(format!(
                "subject {} lacks this deployment's prefix",
                message.subject
            ));
        };
        let reply = match Reply::parse(subject, &message.payload) {
            Ok(reply) => reply,
            Err(e) => return Outcome::Dead(format!("unparseable reply: {e}")),
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
        if let Some(tp) = headers::get(message.headers.as_ref(), "traceparent") {
            metadata.insert("traceparent".to_owned(), tp.to_owned());
        }
        let command = SagaCommand::HandleReply {
            reply,
            now: Utc::now(),
        };
        match self.sagas.execute(order, &command, metadata).await {
            Ok(_) => Outcome::Processed,
            Err(SagaExecuteError::Refused(SagaError::ReplyIgnored { reason })) => {
                tracing::info!(%order, reason = reason.code(), "reply ignored");
                Outcome::Ignored
            }
            Err(SagaExecuteError::Refused(other)) => {
                tracing::info!(%order, refusal = %other, "reply refused");
                Outcome::Ignored
            }
            Err(e) => Outcome::Retry(format!("{e:#}")),
        }
    }

    /// Keeps a reply that can never be processed in `dead.replies.<kind>`, with its reason.
    async fn dead_letter(&self, message: &async_nats::jetstream::Message, reason: &str) {
        let kind = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or("unknown");
        let subject = self.nats.subject(&format!("dead.replies.{kind}"));
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
        match self.nats.publish(subject, h, message.payload.clone()).await {
            Ok(_) => tracing::error!(subject = %message.subject, reason, "reply dead-lettered"),
            Err(e) => {
                tracing::error!(subject = %message.subject, reason, error = %e, "reply could not even be dead-lettered");
            }
        }
    }
}
