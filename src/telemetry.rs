//! Telemetry, composed in one place: the tracing subscriber (env filter, pretty or JSON logs,
//! optional OpenTelemetry export) and the Prometheus metrics every part of the service records
//! into.
//!
//! Tests stay silent unless `TEST_LOG` is set.

use std::sync::Arc;

use anyhow::Context as _;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, OtelSettings};

/// Installs the global subscriber. `default_format` applies when the configuration leaves the
/// format unset (pretty in `dev`, JSON otherwise).
pub fn init(format: LogFormat, otel: &OtelSettings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let otel_layer = match &otel.endpoint {
        Some(endpoint) => Some(otel_layer(endpoint, &otel.service_name)?),
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layer)
        .try_init()
        .context("a global tracing subscriber was already installed")
}

fn otel_layer<S>(
    endpoint: &str,
    service_name: &str,
) -> anyhow::Result<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .context("building the OTLP exporter")?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("order-service");
    opentelemetry::global::set_tracer_provider(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// For tests: logs to the test writer when `TEST_LOG` is set, otherwise nothing.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::registry()
            .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .try_init();
    }
}

/// Every metric of the service, in base units, registered once.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// HTTP requests by route template, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency by route template and method (seconds).
    pub http_duration: HistogramVec,
    /// Commands by type and outcome (accepted, replayed, refused, conflict, error).
    pub commands: IntCounterVec,
    /// Command latency from load to commit, by type (seconds).
    pub command_duration: HistogramVec,
    /// Where a command's time goes: `lock` (wait for the order's in-process lock), `load`
    /// (read and fold its events), `catalog` (price lookup), `decide`, `append` (insert and
    /// commit), `backoff` (waiting after a conflict).
    pub command_stage_seconds: HistogramVec,
    /// Optimistic-concurrency retries by command type.
    pub command_retries: IntCounterVec,
    /// Order cache lookups of commands: `hit`, `miss`, `stale` (a hit that had to be loaded
    /// again: the append found a newer version, or the command did not append).
    pub order_cache: IntCounterVec,
    pub saga_cache: IntCounterVec,
    /// Events appended to the store, by event type.
    pub events_appended: IntCounterVec,
    /// Database pool: connections open, and idle.
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
    /// Log readers: 1 where this process holds the reader's lock.
    pub reader_leader: IntGaugeVec,
    /// Events committed after the reader's checkpoint.
    pub reader_lag_events: IntGaugeVec,
    /// Age of the oldest event the reader has not processed (seconds).
    pub reader_lag_seconds: GaugeVec,
    /// Events processed.
    pub reader_events: IntCounterVec,
    /// Events per batch.
    pub reader_batch_size: HistogramVec,
    /// Time to apply one batch, commit included (seconds).
    pub reader_apply_seconds: HistogramVec,
    /// Time from an event's append until the reader has handled it (and committed it, for
    /// readers with a transaction per batch), in seconds.
    pub reader_event_delay_seconds: HistogramVec,
    /// Position of the last processed event.
    pub reader_position: IntGaugeVec,
    /// Batches that failed and were retried.
    pub reader_errors: IntCounterVec,
    /// Saga events appended, by type (started, requested steps, completed, compensated...).
    pub saga_events: IntCounterVec,
    /// Replies the saga refused (wrong saga, unknown request, wrong amount...), by reason.
    pub saga_replies_ignored: IntCounterVec,
    /// Reply deliveries that failed for a passing reason and were nak'd to come back later, by
    /// cause (`store`: the database failed; `conflict`: too many concurrent writers on the
    /// saga; `dead_letter`: an unprocessable reply could not be stored in the dead letters).
    pub saga_reply_transient_failures: IntCounterVec,
    /// Time from a saga request to its reply, by step (seconds).
    pub saga_step_seconds: HistogramVec,
    /// JetStream publishes by stream and outcome.
    pub nats_published: IntCounterVec,
    /// Messages consumed by consumer and outcome (processed, ignored, retried, dead_lettered,
    /// dead_letter_failed).
    pub nats_consumed: IntCounterVec,
    /// Live feeds open, by feed (`order`, `store`).
    pub live_feeds_open: IntGaugeVec,
    /// Messages sent on live feeds, by feed.
    pub live_messages: IntCounterVec,
    /// Live feeds that read from the database what they had not heard live, by feed and reason
    /// (`resume`: the client came back with its last id; `lagged`: it read slower than events
    /// came; `gap`: an order's version jumped).
    pub live_catch_ups: IntCounterVec,
    /// Live feeds ended by a failure (the database), by feed; their clients resume.
    pub live_feed_failures: IntCounterVec,
    /// Commands per append statement (the group writer, `store::append`).
    pub append_batch_commands: Histogram,
    /// Time per append statement, queueing excluded.
    pub append_seconds: Histogram,
    /// Batches written command by command because one of them conflicted (or the statement
    /// failed).
    pub append_batches_apart: IntCounter,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(latency_buckets.clone()),
            &["route", "method"],
        )?;
        let commands = IntCounterVec::new(
            Opts::new("order_commands_total", "Order commands by type and outcome"),
            &["command", "outcome"],
        )?;
        let command_duration = HistogramVec::new(
            HistogramOpts::new(
                "order_command_duration_seconds",
                "Order command latency: load, decide, append, commit",
            )
            .buckets(latency_buckets),
            &["command"],
        )?;
        let command_stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "order_command_stage_seconds",
                "Time per stage of an order command: lock, load, decide (catalog prices included), append, backoff",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0,
            ]),
            &["stage"],
        )?;
        let command_retries = IntCounterVec::new(
            Opts::new(
                "order_command_retries_total",
                "Commands retried after an optimistic-concurrency conflict",
            ),
            &["command"],
        )?;
        let order_cache = IntCounterVec::new(
            Opts::new(
                "order_cache_lookups_total",
                "Order state looked up in the command cache, by outcome (hit, miss, stale)",
            ),
            &["outcome"],
        )?;
        let saga_cache = IntCounterVec::new(
            Opts::new(
                "saga_cache_lookups_total",
                "Saga state looked up in the command cache, by outcome (hit, miss, stale)",
            ),
            &["outcome"],
        )?;
        let events_appended = IntCounterVec::new(
            Opts::new(
                "events_appended_total",
                "Events appended to the event store",
            ),
            &["event_type"],
        )?;
        let db_pool_size = IntGauge::new("db_pool_connections", "Open database connections")?;
        let db_pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        let reader_leader = IntGaugeVec::new(
            Opts::new("log_reader_active", "1 where this process runs the reader"),
            &["reader"],
        )?;
        let reader_lag_events = IntGaugeVec::new(
            Opts::new(
                "log_reader_lag_events",
                "Events committed after the reader's checkpoint",
            ),
            &["reader"],
        )?;
        let reader_lag_seconds = GaugeVec::new(
            Opts::new(
                "log_reader_lag_seconds",
                "Age of the oldest unprocessed event",
            ),
            &["reader"],
        )?;
        let reader_events = IntCounterVec::new(
            Opts::new("log_reader_events_total", "Events processed by the reader"),
            &["reader"],
        )?;
        let reader_batch_size = HistogramVec::new(
            HistogramOpts::new("log_reader_batch_size", "Events per batch").buckets(vec![
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
            ]),
            &["reader"],
        )?;
        let reader_apply_seconds = HistogramVec::new(
            HistogramOpts::new(
                "log_reader_apply_seconds",
                "Time to apply one batch (and commit it, for readers with a transaction per batch)",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["reader"],
        )?;
        let reader_event_delay_seconds = HistogramVec::new(
            HistogramOpts::new(
                "log_reader_event_delay_seconds",
                "Time from an event's append until the reader has handled it (committed, for readers with a transaction per batch)",
            )
            .buckets(vec![
                0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["reader"],
        )?;
        let reader_position = IntGaugeVec::new(
            Opts::new(
                "log_reader_position",
                "Position of the last processed event",
            ),
            &["reader"],
        )?;
        let saga_events = IntCounterVec::new(
            Opts::new("saga_events_total", "Saga events appended, by type"),
            &["event_type"],
        )?;
        let saga_replies_ignored = IntCounterVec::new(
            Opts::new(
                "saga_replies_ignored_total",
                "Participant replies the saga refused, by reason",
            ),
            &["reason"],
        )?;
        let saga_reply_transient_failures = IntCounterVec::new(
            Opts::new(
                "saga_reply_transient_failures_total",
                "Reply deliveries nak'd after a passing failure, to be delivered again, by cause",
            ),
            &["cause"],
        )?;
        let saga_step_seconds = HistogramVec::new(
            HistogramOpts::new("saga_step_seconds", "Time from a saga request to its reply")
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            &["step"],
        )?;
        let nats_published = IntCounterVec::new(
            Opts::new(
                "nats_published_total",
                "JetStream publishes, by stream and outcome",
            ),
            &["stream", "outcome"],
        )?;
        let nats_consumed = IntCounterVec::new(
            Opts::new(
                "nats_consumed_total",
                "Messages consumed, by consumer and outcome",
            ),
            &["consumer", "outcome"],
        )?;
        let reader_errors = IntCounterVec::new(
            Opts::new(
                "log_reader_errors_total",
                "Batches that failed and will be retried",
            ),
            &["reader"],
        )?;
        let live_feeds_open = IntGaugeVec::new(
            Opts::new("live_feeds_open", "Live feeds open, by feed"),
            &["feed"],
        )?;
        let live_messages = IntCounterVec::new(
            Opts::new(
                "live_messages_total",
                "Messages sent on live feeds, by feed",
            ),
            &["feed"],
        )?;
        let live_catch_ups = IntCounterVec::new(
            Opts::new(
                "live_catch_ups_total",
                "Live feeds that read missed events from the database, by feed and reason",
            ),
            &["feed", "reason"],
        )?;
        let append_batch_commands = Histogram::with_opts(
            HistogramOpts::new(
                "event_append_batch_commands",
                "Commands whose events one append statement wrote",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 500.0,
            ]),
        )?;
        let append_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "event_append_seconds",
                "Time per append statement (its commit included, queueing excluded)",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )?;
        let append_batches_apart = IntCounter::with_opts(Opts::new(
            "event_append_batches_apart_total",
            "Append batches written command by command after a conflict or a failure",
        ))?;
        let live_feed_failures = IntCounterVec::new(
            Opts::new(
                "live_feed_failures_total",
                "Live feeds ended by a failure, by feed",
            ),
            &["feed"],
        )?;
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(commands.clone()),
            Box::new(command_duration.clone()),
            Box::new(command_stage_seconds.clone()),
            Box::new(command_retries.clone()),
            Box::new(order_cache.clone()),
            Box::new(saga_cache.clone()),
            Box::new(events_appended.clone()),
            Box::new(db_pool_size.clone()),
            Box::new(db_pool_idle.clone()),
            Box::new(reader_leader.clone()),
            Box::new(reader_lag_events.clone()),
            Box::new(reader_lag_seconds.clone()),
            Box::new(reader_events.clone()),
            Box::new(reader_batch_size.clone()),
            Box::new(reader_apply_seconds.clone()),
            Box::new(reader_event_delay_seconds.clone()),
            Box::new(reader_position.clone()),
            Box::new(reader_errors.clone()),
            Box::new(saga_events.clone()),
            Box::new(saga_replies_ignored.clone()),
            Box::new(saga_reply_transient_failures.clone()),
            Box::new(saga_step_seconds.clone()),
            Box::new(nats_published.clone()),
            Box::new(nats_consumed.clone()),
            Box::new(live_feeds_open.clone()),
            Box::new(live_messages.clone()),
            Box::new(live_catch_ups.clone()),
            Box::new(live_feed_failures.clone()),
            Box::new(append_batch_commands.clone()),
            Box::new(append_seconds.clone()),
            Box::new(append_batches_apart.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Arc::new(Self {
            registry,
            http_requests,
            http_duration,
            commands,
            command_duration,
            command_stage_seconds,
            command_retries,
            order_cache,
            saga_cache,
            events_appended,
            db_pool_size,
            db_pool_idle,
            reader_leader,
            reader_lag_events,
            reader_lag_seconds,
            reader_events,
            reader_batch_size,
            reader_apply_seconds,
            reader_event_delay_seconds,
            reader_position,
            reader_errors,
            saga_events,
            saga_replies_ignored,
            saga_reply_transient_failures,
            saga_step_seconds,
            nats_published,
            nats_consumed,
            live_feeds_open,
            live_messages,
            live_catch_ups,
            live_feed_failures,
            append_batch_commands,
            append_seconds,
            append_batches_apart,
        }))
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
