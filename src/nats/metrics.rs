//! NATS traffic: what the relay published and what the service's consumers took.

use prometheus::{IntCounterVec, Registry};

use crate::metric;

#[derive(Debug, Clone)]
pub struct NatsMetrics {
    /// JetStream publishes by stream and outcome (`stored`, `duplicate`, `error`).
    pub published: IntCounterVec,
    /// Messages consumed by consumer and outcome (processed, ignored, retried, dead_lettered,
    /// dead_letter_failed).
    pub consumed: IntCounterVec,
}

impl NatsMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
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
        })
    }
}
