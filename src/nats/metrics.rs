//! NATS traffic: what the relay published and what the service's consumers took, and, sampled
//! at each scrape ([`NatsMetrics::sample`]), whether the client is connected and how far behind
//! the service's JetStream consumers are.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::Nats;
use crate::metric;

/// How long a scrape waits for JetStream to describe one consumer. Well below a scraper's own
/// timeout (Prometheus: 10 s by default): a slow JetStream must not cost the whole scrape.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct NatsMetrics {
    /// JetStream publishes by stream and outcome (`stored`, `duplicate`, `error`).
    pub published: IntCounterVec,
    /// Messages consumed by consumer and outcome (processed, ignored, retried, dead_lettered,
    /// dead_letter_failed).
    pub consumed: IntCounterVec,
    /// 1 while the client is connected to a server, 0 while it is not (async-nats reconnects by
    /// itself). No labels, and absent from a process that does not use NATS (no saga
    /// machinery): only a process that needs NATS says it lost it.
    pub connected: IntGaugeVec,
    /// Messages of the stream the consumer has not had delivered yet (JetStream `num_pending`).
    pub consumer_pending: IntGaugeVec,
    /// Messages delivered and not acknowledged yet (`num_ack_pending`).
    pub consumer_ack_pending: IntGaugeVec,
    /// Of those, the ones delivered more than once (`num_redelivered`).
    pub consumer_redelivered: IntGaugeVec,
}

/// One durable JetStream consumer whose state [`NatsMetrics::sample`] reads.
#[derive(Debug, Clone)]
pub struct ConsumerRef {
    /// The metrics' `consumer` label (the same as `nats_consumed_total`'s).
    pub label: &'static str,
    /// The stream's name, with the deployment's prefix.
    pub stream: String,
    /// The durable consumer's name.
    pub durable: String,
}

impl NatsMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let consumer = &["consumer"];
        Ok(Self {
            published: metric::counters(
                registry,
                "nats_published_total",
                "JetStream publishes, by stream and outcome",
                &["stream", "outcome"],
            )?,
            consumed: metric::counters(
                registry,
                "nats_consumed_total",
                "Messages consumed, by consumer and outcome",
                &["consumer", "outcome"],
            )?,
            connected: metric::gauges(
                registry,
                "nats_connected",
                "1 while the NATS client is connected, 0 while it is not (sampled at each scrape)",
                &[],
            )?,
            consumer_pending: metric::gauges(
                registry,
                "nats_consumer_pending_messages",
                "Messages of the stream not delivered to the consumer yet (sampled at each scrape)",
                consumer,
            )?,
            consumer_ack_pending: metric::gauges(
                registry,
                "nats_consumer_ack_pending_messages",
                "Messages delivered to the consumer and not acknowledged yet (sampled at each scrape)",
                consumer,
            )?,
            consumer_redelivered: metric::gauges(
                registry,
                "nats_consumer_redelivered_messages",
                "Unacknowledged messages delivered to the consumer more than once (sampled at each scrape)",
                consumer,
            )?,
        })
    }

    /// Sets `nats_connected` from the client's state and, while connected, each of
    /// `consumers`' gauges from JetStream's description of it (one `CONSUMER.INFO` request
    /// each, at most [`SAMPLE_TIMEOUT`]). A consumer that cannot be described now (not created
    /// yet, JetStream slow or away) loses its series until it can: a stale backlog is worse
    /// than none, and `nats_connected` says when NATS is away.
    pub async fn sample(&self, nats: &Nats, consumers: &[ConsumerRef]) {
        let connected = nats.client.connection_state() == async_nats::connection::State::Connected;
        self.connected
            .with_label_values::<&str>(&[])
            .set(i64::from(connected));
        for consumer in consumers {
            let described = if connected {
                describe(nats, consumer).await
            } else {
                Err("not connected to NATS".to_owned())
            };
            let label = [consumer.label];
            match described {
                Ok(info) => {
                    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                    self.consumer_pending
                        .with_label_values(&label)
                        .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    self.consumer_ack_pending
                        .with_label_values(&label)
                        .set(count(info.num_ack_pending));
                    self.consumer_redelivered
                        .with_label_values(&label)
                        .set(count(info.num_redelivered));
                }
                Err(reason) => {
                    tracing::debug!(
                        consumer = consumer.label,
                        reason,
                        "could not sample the consumer"
                    );
                    for gauges in [
                        &self.consumer_pending,
                        &self.consumer_ack_pending,
                        &self.consumer_redelivered,
                    ] {
                        // absent already when it was never sampled: nothing to remove
                        let _ = gauges.remove_label_values(&label);
                    }
                }
            }
        }
    }
}

/// JetStream's description of `consumer`, or why there is none.
async fn describe(
    nats: &Nats,
    consumer: &ConsumerRef,
) -> Result<async_nats::jetstream::consumer::Info, String> {
    let lookup = nats
        .js
        .get_consumer_from_stream::<pull::Config, _, _>(&consumer.durable, &consumer.stream);
    match tokio::time::timeout(SAMPLE_TIMEOUT, lookup).await {
        Ok(Ok(found)) => Ok(found.cached_info().clone()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {SAMPLE_TIMEOUT:?}")),
    }
}
