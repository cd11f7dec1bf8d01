//! The tracer behind every span: an OpenTelemetry provider that exports over OTLP (HTTP or
//! gRPC) when an endpoint is configured, and otherwise still gives every span its ids, so log
//! lines carry `trace_id` and the NATS messages a `traceparent` even with export off.
//!
//! Settings come from `APP__OTEL__*` first, then the standard `OTEL_*` variables
//! (`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `.._PROTOCOL`, `.._HEADERS`, `.._TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none`). Spans are sent in batches from the batch
//! processor's own thread; [`Tracing::shutdown`] sends what is left before the process ends.

use anyhow::Context as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use super::build_info;
use crate::config::OtelSettings;

/// Where spans go, as resolved from the settings and the environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Export {
    Off,
    /// OTLP over HTTP with protobuf bodies; `None` leaves the URL to the `OTEL_*` variables.
    Http(Option<String>),
    /// OTLP over gRPC; `None` leaves the URL to the `OTEL_*` variables.
    Grpc(Option<String>),
}

impl Export {
    /// Reads `settings`, then the environment through `env`.
    pub fn resolve(
        settings: &OtelSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(Self::Off);
        }
        let from_env = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if settings.endpoint.is_none() && !from_env {
            return Ok(Self::Off);
        }
        let protocol = settings
            .protocol
            .clone()
            .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".to_owned());
        match protocol.as_str() {
            "http/protobuf" => Ok(Self::Http(settings.endpoint.as_deref().map(|base| {
                // a base URL, as the standard variable is: the signal's path is ours to add
                let base = base.trim_end_matches('/');
                if base.ends_with("/v1/traces") {
                    base.to_owned()
                } else {
                    format!("{base}/v1/traces")
                }
            }))),
            "grpc" => Ok(Self::Grpc(settings.endpoint.clone())),
            other => anyhow::bail!(
                "unsupported OTLP protocol {other:?} (APP__OTEL__PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL): use \"http/protobuf\" or \"grpc\""
            ),
        }
    }
}

/// The process's tracer provider; shut it down to flush.
#[derive(Debug, Clone)]
pub struct Tracing {
    pub provider: SdkTracerProvider,
    pub export: Export,
}

impl Tracing {
    /// Builds the provider. Must run inside the Tokio runtime (the gRPC client lives on it).
    pub fn build(settings: &OtelSettings) -> anyhow::Result<Self> {
        let export = Export::resolve(settings, |name| std::env::var(name).ok())?;
        if let Some(ratio) = settings.sample_ratio {
            anyhow::ensure!(
                (0.0..=1.0).contains(&ratio),
                "APP__OTEL__SAMPLE_RATIO must be between 0.0 and 1.0, not {ratio}"
            );
        }
        let mut builder = SdkTracerProvider::builder().with_resource(resource(settings));
        // unset: the SDK's default (OTEL_TRACES_SAMPLER, else parent-based always-on); without
        // export the provider is never handed to a layer (`telemetry::init`)
        if let Some(ratio) = settings.sample_ratio {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let exporter = match &export {
            Export::Off => None,
            Export::Http(endpoint) => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                if let Some(endpoint) = endpoint {
                    b = b.with_endpoint(endpoint.clone());
                }
                Some(b.build().context("building the OTLP/HTTP span exporter")?)
            }
            Export::Grpc(endpoint) => {
                let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
                if let Some(endpoint) = endpoint {
                    b = b.with_endpoint(endpoint.clone());
                }
                Some(b.build().context("building the OTLP/gRPC span exporter")?)
            }
        };
        if let Some(exporter) = exporter {
            builder = builder.with_batch_exporter(exporter);
        }
        Ok(Self {
            provider: builder.build(),
            export,
        })
    }

    /// Sends the spans still buffered and stops the exporter; blocking work, kept off the
    /// runtime's threads (the gRPC client needs them to send).
    pub async fn shutdown(self) {
        if self.export == Export::Off {
            return;
        }
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: flushing traces at shutdown: {e}"),
            Err(e) => eprintln!("warning: flushing traces at shutdown: {e}"),
        }
    }
}

/// `service.name`, `service.version`, `service.instance.id`, plus `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(settings: &OtelSettings) -> opentelemetry_sdk::Resource {
    use opentelemetry::KeyValue;

    let name = settings
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .unwrap_or_else(|| "order-service".to_owned());
    let instance = settings
        .instance_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attributes([
            KeyValue::new("service.version", build_info::VERSION),
            KeyValue::new("service.instance.id", instance),
            KeyValue::new("vcs.ref.head.revision", build_info::GIT_SHA),
        ])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, protocol: Option<&str>) -> OtelSettings {
        OtelSettings {
            endpoint: endpoint.map(str::to_owned),
            protocol: protocol.map(str::to_owned),
            service_name: None,
            instance_id: None,
            sample_ratio: None,
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn an_endpoint_of_ours_is_a_base_url_the_traces_path_is_added_to() {
        let http = Export::resolve(&settings(Some("http://c:4318/"), None), env(&[])).unwrap();
        assert_eq!(http, Export::Http(Some("http://c:4318/v1/traces".into())));
        let full = Export::resolve(&settings(Some("http://c:4318/v1/traces"), None), env(&[]));
        assert_eq!(
            full.unwrap(),
            Export::Http(Some("http://c:4318/v1/traces".into()))
        );
        let grpc = Export::resolve(&settings(Some("http://c:4317"), Some("grpc")), env(&[]));
        assert_eq!(grpc.unwrap(), Export::Grpc(Some("http://c:4317".into())));
    }

    #[test]
    fn the_standard_variables_turn_export_on_pick_the_protocol_and_can_turn_it_off() {
        let none = Export::resolve(&settings(None, None), env(&[])).unwrap();
        assert_eq!(none, Export::Off);
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        let grpc = Export::resolve(&settings(None, None), env(&vars)).unwrap();
        assert_eq!(grpc, Export::Grpc(None));
        let traces = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/x")];
        let http = Export::resolve(&settings(None, None), env(&traces)).unwrap();
        assert_eq!(http, Export::Http(None));
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        let off = Export::resolve(&settings(Some("http://c:4318"), None), env(&disabled));
        assert_eq!(off.unwrap(), Export::Off);
        let json = Export::resolve(
            &settings(Some("http://c:4318"), Some("http/json")),
            env(&[]),
        );
        assert!(json.unwrap_err().to_string().contains("http/json"));
    }
}
