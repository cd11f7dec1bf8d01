//! Telemetry, composed in one place: the tracing subscriber (env filter, pretty or JSON logs,
//! optional OpenTelemetry export) and the process's Prometheus registry, which gathers the
//! metrics each subsystem registers beside the code that moves them (`metric`).
//!
//! Tests stay silent unless `TEST_LOG` is set.

use std::sync::Arc;

use anyhow::Context as _;
use prometheus::Registry;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, OtelSettings};
use crate::http::metrics::HttpMetrics;
use crate::live::metrics::LiveMetrics;
use crate::log::metrics::ReaderMetrics;
use crate::nats::metrics::NatsMetrics;
use crate::store::metrics::StoreMetrics;
use crate::store::saga_metrics::SagaMetrics;
use crate::workers::metrics::ReplyMetrics;

pub mod build_info;
pub mod export;
pub mod json_log;
pub mod trace_context;

pub use build_info::GIT_SHA;
pub use export::Tracing;

/// Installs the global subscriber: what `RUST_LOG` (default `info`) enables is logged in
/// `format`, and, when traces are exported, the service's own spans among it go to
/// OpenTelemetry (its spans are at `info`: a `RUST_LOG` quieter than that for `order_service`
/// leaves traces without them). Without export no span gets ids: log lines carry none, and
/// a caller's `traceparent` is passed on as it came.
/// Returns the tracer provider, to be shut down (flushed) at exit.
pub fn init(format: LogFormat, otel: &OtelSettings) -> anyhow::Result<Tracing> {
    init_writing(format, otel, BoxMakeWriter::new(std::io::stdout))
}

/// [`init`] with the log lines on standard error: for a command whose standard output is its
/// answer (`verify --json`).
pub fn init_on_stderr(format: LogFormat, otel: &OtelSettings) -> anyhow::Result<Tracing> {
    init_writing(format, otel, BoxMakeWriter::new(std::io::stderr))
}

fn init_writing(
    format: LogFormat,
    otel: &OtelSettings,
    writer: BoxMakeWriter,
) -> anyhow::Result<Tracing> {
    use opentelemetry::trace::TracerProvider as _;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_log::JsonWithTrace)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(writer)
            .boxed(),
    };
    let tracing = Tracing::build(otel)?;
    // Only the service's own spans (not, say, poem's nameless request-id span around each
    // request, nor the exporter's HTTP and gRPC clients tracing themselves).
    let own =
        tracing_subscriber::filter::filter_fn(|meta| meta.target().starts_with("order_service"));
    // Only while traces are exported: the layer costs about 8% of the read path's throughput
    // (docs/BENCHMARKS.md, issue 18). Without it a hop passes on the trace it was given.
    let otel_layer = (tracing.export != export::Export::Off).then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracing.provider.tracer("order-service"))
            .with_filter(own)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layer)
        .try_init()
        .context("a global tracing subscriber was already installed")?;
    Ok(tracing)
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

/// The process's metrics: one registry, and each subsystem's families (registered by the
/// subsystem, beside the code that moves them).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub store: StoreMetrics,
    pub sagas: SagaMetrics,
    pub readers: ReaderMetrics,
    pub nats: NatsMetrics,
    pub replies: ReplyMetrics,
    pub live: LiveMetrics,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let registry = Registry::new();
        // CPU seconds, resident and virtual memory, open and maximum file descriptors, start
        // time, threads (`process_*`), read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build_info = crate::metric::gauges(
            &registry,
            "build_info",
            "The running build: 1, labelled with its version and commit",
            &["version", "git_sha"],
        )?;
        build_info
            .with_label_values(&[build_info::VERSION, GIT_SHA])
            .set(1);
        Ok(Arc::new(Self {
            http: HttpMetrics::register(&registry)?,
            store: StoreMetrics::register(&registry)?,
            sagas: SagaMetrics::register(&registry)?,
            readers: ReaderMetrics::register(&registry)?,
            nats: NatsMetrics::register(&registry)?,
            replies: ReplyMetrics::register(&registry)?,
            live: LiveMetrics::register(&registry)?,
            registry,
        }))
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
