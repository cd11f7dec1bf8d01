//! Every log reader's metrics, labelled by reader name.

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::metric;

#[derive(Debug, Clone)]
pub struct ReaderMetrics {
    /// 1 where this process holds the reader's lock.
    pub leader: IntGaugeVec,
    /// Events committed after the reader's checkpoint.
    pub lag_events: IntGaugeVec,
    /// Age of the oldest event the reader has not processed (seconds).
    pub lag_seconds: GaugeVec,
    /// Events processed.
    pub events: IntCounterVec,
    /// Events per batch.
    pub batch_size: HistogramVec,
    /// Time to apply one batch, commit included (seconds).
    pub apply_seconds: HistogramVec,
    /// Time from an event's append until the reader has handled it (and committed it, for
    /// readers with a transaction per batch), in seconds.
    pub event_delay_seconds: HistogramVec,
    /// Position of the last processed event.
    pub position: IntGaugeVec,
    /// Batches that failed and were retried.
    pub errors: IntCounterVec,
    /// Sessions of a hung lock holder this process ended to take the reader over.
    pub holders_ended: IntCounterVec,
}

impl ReaderMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reader = &["reader"];
        Ok(Self {
            leader: metric::gauges(
                registry,
                "log_reader_active",
                "1 where this process runs the reader",
                reader,
            )?,
            lag_events: metric::gauges(
                registry,
                "log_reader_lag_events",
                "Events committed after the reader's checkpoint",
                reader,
            )?,
            lag_seconds: metric::float_gauges(
                registry,
                "log_reader_lag_seconds",
                "Age of the oldest unprocessed event",
                reader,
            )?,
            events: metric::counters(
                registry,
                "log_reader_events_total",
                "Events processed by the reader",
                reader,
            )?,
            batch_size: metric::histograms(
                registry,
                "log_reader_batch_size",
                "Events per batch",
                reader,
                &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
            )?,
            apply_seconds: metric::histograms(
                registry,
                "log_reader_apply_seconds",
                "Time to apply one batch (and commit it, for readers with a transaction per batch)",
                reader,
                &[0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )?,
            event_delay_seconds: metric::histograms(
                registry,
                "log_reader_event_delay_seconds",
                "Time from an event's append until the reader has handled it (committed, for readers with a transaction per batch)",
                reader,
                &[
                    0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            )?,
            position: metric::gauges(
                registry,
                "log_reader_position",
                "Position of the last processed event",
                reader,
            )?,
            errors: metric::counters(
                registry,
                "log_reader_errors_total",
                "Batches that failed and will be retried",
                reader,
            )?,
            holders_ended: metric::counters(
                registry,
                "log_reader_holders_ended_total",
                "Sessions of a hung lock holder (no progress with events waiting) this process ended to take the reader over",
                reader,
            )?,
        })
    }
}
