//! Telemetry, composed in one place: the tracing subscriber (env filter, pretty or JSON logs,
//! optional OpenTelemetry export) and the process's Prometheus registry, which gathers the
//! metrics each subsystem registers beside the code that moves them (`metric`).
//!
//! Tests stay silent unless `TEST_LOG` is set.

use std::sync::Arc;

use anyhow::Context as _;
use prometheus::Registry;
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

/// The commit this binary was built from (`build.rs`).
pub const GIT_SHA: &str = env!("ORDER_SERVICE_GIT_SHA");

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
            .with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_SHA])
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
