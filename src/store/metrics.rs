//! The event store's metrics: commands (orders' and sagas'), their caches, the group writer's
//! appends, the connection pool.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metric::{self, LATENCY_BUCKETS};

#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Commands by type and outcome (accepted, replayed, refused, conflict, error).
    pub commands: IntCounterVec,
    /// Command latency from load to commit, by type (seconds).
    pub command_duration: HistogramVec,
    /// Where a command's time goes: `lock` (wait for the order's in-process lock), `load`
    /// (read and fold its events), `decide` (catalog prices included), `append` (insert and
    /// commit), `backoff` (waiting after a conflict).
    pub command_stage_seconds: HistogramVec,
    /// Optimistic-concurrency retries by command type.
    pub command_retries: IntCounterVec,
    /// Order cache lookups of commands: `hit`, `miss`, `stale` (a hit that had to be loaded
    /// again: the append found a newer version, or the command did not append).
    pub order_cache: IntCounterVec,
    /// The same for sagas.
    pub saga_cache: IntCounterVec,
    /// Order events appended, by event type.
    pub events_appended: IntCounterVec,
    /// Saga events appended, by type (started, requested steps, completed, compensated...).
    pub saga_events: IntCounterVec,
    /// Replies no saga believed, by reason: the saga's refusals (`unknown_request`,
    /// `wrong_amount`, `wrong_currency`, ...: `IgnoredReason::code`) and `malformed` (outside
    /// the contract; dead-lettered). A bounded set.
    pub saga_replies_ignored: IntCounterVec,
    /// Commands per append statement (the group writer, `store::append`).
    pub append_batch_commands: Histogram,
    /// Time per append statement, queueing excluded.
    pub append_seconds: Histogram,
    /// Batches written command by command because one of them conflicted (or the statement
    /// failed).
    pub append_batches_apart: IntCounter,
    /// Database pool: connections open, and idle (sampled at each scrape).
    pub pool_size: IntGauge,
    pub pool_idle: IntGauge,
}

impl StoreMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let lookups = &["outcome"];
        Ok(Self {
            commands: metric::counters(
                r,
                "order_commands_total",
                "Order commands by type and outcome",
                &["command", "outcome"],
            )?,
            command_duration: metric::histograms(
                r,
                "order_command_duration_seconds",
                "Order command latency: load, decide, append, commit",
                &["command"],
                LATENCY_BUCKETS,
            )?,
            command_stage_seconds: metric::histograms(
                r,
                "order_command_stage_seconds",
                "Time per stage of an order command: lock, load, decide (catalog prices included), append, backoff",
                &["stage"],
                &[
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0,
                ],
            )?,
            command_retries: metric::counters(
                r,
                "order_command_retries_total",
                "Commands retried after an optimistic-concurrency conflict",
                &["command"],
            )?,
            order_cache: metric::counters(
                r,
                "order_cache_lookups_total",
                "Order state looked up in the command cache, by outcome (hit, miss, stale)",
                lookups,
            )?,
            saga_cache: metric::counters(
                r,
                "saga_cache_lookups_total",
                "Saga state looked up in the command cache, by outcome (hit, miss, stale)",
                lookups,
            )?,
            events_appended: metric::counters(
                r,
                "events_appended_total",
                "Events appended to the event store",
                &["event_type"],
            )?,
            saga_events: metric::counters(
                r,
                "saga_events_total",
                "Saga events appended, by type",
                &["event_type"],
            )?,
            saga_replies_ignored: metric::counters(
                r,
                "saga_replies_ignored_total",
                "Participant replies no saga believed (refused, or malformed), by reason",
                &["reason"],
            )?,
            append_batch_commands: metric::histogram(
                r,
                "event_append_batch_commands",
                "Commands whose events one append statement wrote",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 500.0],
            )?,
            append_seconds: metric::histogram(
                r,
                "event_append_seconds",
                "Time per append statement (its commit included, queueing excluded)",
                &[
                    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            )?,
            append_batches_apart: metric::counter(
                r,
                "event_append_batches_apart_total",
                "Append batches written command by command after a conflict or a failure",
            )?,
            pool_size: metric::gauge(r, "db_pool_connections", "Open database connections")?,
            pool_idle: metric::gauge(r, "db_pool_idle_connections", "Idle database connections")?,
        })
    }

    /// One append statement: how many commands it wrote, how long it took, and whether it was
    /// written command by command instead.
    pub fn observe_append(&self, commands: usize, took: std::time::Duration, apart: bool) {
        #[expect(clippy::cast_precision_loss, reason = "a count for a histogram")]
        self.append_batch_commands.observe(commands as f64);
        self.append_seconds.observe(took.as_secs_f64());
        if apart {
            self.append_batches_apart.inc();
        }
    }
}
