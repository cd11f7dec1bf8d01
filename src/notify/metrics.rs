//! The email notifications' metrics (the notifier's reader has its own as a log reader,
//! `reader="notifier"`).

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metric;

/// Delivery latencies: a local relay answers in milliseconds, a remote one in seconds.
const SEND_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    /// Emails the SMTP server accepted, by kind (`confirmed`, `shipped`, ...).
    pub sent: IntCounterVec,
    /// Emails given up on (a permanent refusal, or transient ones for too long), by kind.
    pub failed: IntCounterVec,
    /// Transient failures (4xx, connection, timeout), each followed by a later attempt.
    pub retried: IntCounter,
    /// Emails queued and not yet sent or failed, all replicas' (measured at each sweep).
    pub pending: IntGauge,
    /// How long one delivery took, whatever its outcome.
    pub send_seconds: Histogram,
}

impl NotifyMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            sent: metric::counters(
                registry,
                "notifications_sent_total",
                "Emails accepted by the SMTP server, by kind",
                &["kind"],
            )?,
            failed: metric::counters(
                registry,
                "notifications_failed_total",
                "Emails given up on (permanent refusal or retried too long), by kind",
                &["kind"],
            )?,
            retried: metric::counter(
                registry,
                "notifications_retried_total",
                "Transient delivery failures, each followed by a later attempt",
            )?,
            pending: metric::gauge(
                registry,
                "notifications_pending",
                "Emails queued and not yet sent or failed",
            )?,
            send_seconds: metric::histogram(
                registry,
                "notification_send_seconds",
                "Duration of one delivery attempt",
                SEND_BUCKETS,
            )?,
        })
    }
}
