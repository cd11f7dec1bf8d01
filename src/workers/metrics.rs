//! The reply consumer's own metrics (its NATS deliveries are counted in `nats_consumed_total`).

use prometheus::{IntCounterVec, Registry};

use crate::metric;

/// The reply consumer's.
#[derive(Debug, Clone)]
pub struct ReplyMetrics {
    /// Reply deliveries that failed for a passing reason and were nak'd to come back later, by
    /// cause (`store`: the database failed; `conflict`: too many concurrent writers on the
    /// saga; `dead_letter`: an unprocessable reply could not be stored in the dead letters).
    pub transient_failures: IntCounterVec,
}

impl ReplyMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            transient_failures: metric::counters(
                registry,
                "saga_reply_transient_failures_total",
                "Reply deliveries nak'd after a passing failure, to be delivered again, by cause",
                &["cause"],
            )?,
        })
    }
}
