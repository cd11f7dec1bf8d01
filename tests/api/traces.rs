//! One trace per saga, seen by a real OTLP receiver: `order-service serve` runs as a child
//! process exporting to a receiver in this test (OTLP over HTTP with protobuf bodies, and
//! over gRPC), a storefront places an order without a `traceparent`, and every hop up to the
//! confirmation is a span of the trace the service started, each under the hop that caused
//! it. The JSON log lines of that work carry the trace's ids.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use uuid::Uuid;

use crate::helpers::{spawn_app_with, test_nats_settings, TestApp, Who};

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: SpanKind,
    attributes: HashMap<String, String>,
    service: String,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP receiver on loopback: `POST /v1/traces` (protobuf) over HTTP/1.1, and the gRPC
/// `TraceService/Export` over HTTP/2 without TLS, on the same port.
async fn receiver() -> (u16, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let spans = Spans::default();
    let store = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| export(req, store.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (port, spans)
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn export(
    req: hyper::Request<hyper::body::Incoming>,
    spans: Spans,
) -> Result<hyper::Response<Body>, Infallible> {
    let grpc = req.uri().path() == "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    assert!(
        grpc || req.uri().path() == "/v1/traces",
        "export to an unexpected path {}",
        req.uri()
    );
    let body = req.into_body().collect().await.expect("body").to_bytes();
    // gRPC frames the message: a compression flag and a 4-byte length before it
    let message = if grpc { body.slice(5..) } else { body };
    let request = ExportTraceServiceRequest::decode(message).expect("an OTLP trace export");
    record(&request, &spans);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    let response = if grpc {
        let mut framed = vec![0];
        framed.extend_from_slice(&u32::try_from(answer.len()).expect("len").to_be_bytes());
        framed.extend_from_slice(&answer);
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().expect("value"));
        let body = futures::stream::iter([
            Ok::<_, Infallible>(Frame::data(Bytes::from(framed))),
            Ok(Frame::trailers(trailers)),
        ]);
        hyper::Response::builder()
            .header("content-type", "application/grpc")
            .body(BodyExt::boxed(StreamBody::new(body)))
    } else {
        hyper::Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(answer)).boxed())
    };
    Ok(response.expect("response"))
}

fn record(request: &ExportTraceServiceRequest, spans: &Spans) {
    let mut spans = spans.lock().expect("spans");
    for resource in &request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(a.value.as_ref()))
            .unwrap_or_default();
        for scope in &resource.scope_spans {
            for span in &scope.spans {
                spans.push(Received {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a.value.as_ref())))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `order-service serve` with the saga machinery, the in-process simulator and trace export
/// to `otlp` over `protocol`; its stdout (JSON logs) collected.
struct Service {
    child: tokio::process::Child,
    address: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    async fn spawn(app: &TestApp, prefix: &str, otlp: u16, protocol: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let nats_url =
            std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
        let database_url = app
            .settings
            .database_url
            .as_ref()
            .expect("url")
            .expose_secret()
            .to_owned();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env("APP__NATS__PREFIX", prefix)
            .env("APP__HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("APP__AUTH__JWT_SECRET", crate::helpers::SECRET)
            .env("APP__WORKERS__SAGAS", "true")
            .env("APP__SIMULATOR__ENABLED", "true")
            .env("APP__LOG__FORMAT", "json")
            // the standard variables, as an SRE sets them
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{otlp}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_SERVICE_NAME", "orders-under-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("RUST_LOG", "warn,order_service=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn order-service");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("logs").push(line);
            }
        });
        let this = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/health/ready", this.address)).await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break this;
            }
            assert!(Instant::now() < deadline, "order-service did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, app: &TestApp, path: &str, who: &Who, body: Value) -> Value {
        let answer = app
            .raw(
                app.client
                    .post(format!("{}{path}", self.address))
                    .bearer_auth(&who.token)
                    .json(&body),
            )
            .await;
        assert!(answer.status.is_success(), "{path}: {}", answer.text);
        answer.body
    }
}

/// Waits until the receiver has a span named `name` in `trace`.
async fn wait_for_span(spans: &Spans, trace: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        {
            let spans = spans.lock().expect("spans");
            if spans.iter().any(|s| s.trace_id == trace && s.name == name) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no span {name:?} in trace {trace}; received: {:#?}",
                spans
                    .iter()
                    .map(|s| (&s.trace_id, &s.name))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_trace_per_saga(protocol: &str) {
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    let prefix = format!("trace{}.", Uuid::new_v4().simple());
    let (otlp, spans) = receiver().await;
    let mut service = Service::spawn(&app, &prefix, otlp, protocol).await;

    // a storefront that sends no traceparent
    let alice = app.customer("alice");
    let order = service
        .post(
            &app,
            "/v1/orders",
            &alice,
            json!({"store_id": store, "customer_id": "alice"}),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    service
        .post(
            &app,
            &format!("/v1/orders/{order}/items"),
            &alice,
            json!({"sku": "TEA", "quantity": 2}),
        )
        .await;
    service
        .post(
            &app,
            &format!("/v1/orders/{order}/place"),
            &alice,
            json!({}),
        )
        .await;

    // the trace the service started for the placement
    let deadline = Instant::now() + Duration::from_secs(30);
    let place = loop {
        let found = spans
            .lock()
            .expect("spans")
            .iter()
            .find(|s| s.attributes.get("http.route").map(String::as_str) == Some("placeOrder"))
            .cloned();
        if let Some(place) = found {
            break place;
        }
        assert!(Instant::now() < deadline, "no span of the placement");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let trace = place.trace_id.clone();
    assert_eq!(place.parent, "", "the service starts the trace: {place:?}");
    assert_eq!(place.kind, SpanKind::Server);
    assert_eq!(place.name, "POST placeOrder");
    assert_eq!(place.service, "orders-under-test");
    assert_eq!(place.attributes["http.request.method"], "POST");
    assert_eq!(place.attributes["http.response.status_code"], "200");

    // every hop up to the confirmation, each under the hop that caused it
    let chain = [
        ("saga step OrderPlaced", "POST placeOrder"),
        (
            "publish inventory.commands.reserve",
            "saga step OrderPlaced",
        ),
        (
            "process inventory.commands.reserve",
            "publish inventory.commands.reserve",
        ),
        (
            "process inventory.replies.reserved",
            "process inventory.commands.reserve",
        ),
        (
            "saga step inventory.replies.reserved",
            "process inventory.replies.reserved",
        ),
        (
            "publish payment.commands.authorize",
            "saga step inventory.replies.reserved",
        ),
        (
            "process payment.commands.authorize",
            "publish payment.commands.authorize",
        ),
        (
            "process payment.replies.authorized",
            "process payment.commands.authorize",
        ),
        (
            "saga step payment.replies.authorized",
            "process payment.replies.authorized",
        ),
        (
            "saga step OrderConfirmationDue",
            "saga step payment.replies.authorized",
        ),
        (
            "publish orders.OrderConfirmed",
            "saga step OrderConfirmationDue",
        ),
    ];
    for (name, _) in chain {
        wait_for_span(&spans, &trace, name).await;
    }
    let spans = spans.lock().expect("spans").clone();
    let in_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let named = |name: &str| {
        let found: Vec<&&Received> = in_trace.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one span {name:?} in the trace: {found:#?}");
        *found[0]
    };
    for (child, parent) in chain {
        assert_eq!(
            named(child).parent,
            named(parent).span_id,
            "{child:?} is a child of {parent:?}"
        );
    }
    // parents intact: every span of the trace but the root hangs under one of the trace
    let ids: Vec<&str> = in_trace.iter().map(|s| s.span_id.as_str()).collect();
    for span in &in_trace {
        assert!(
            span.parent.is_empty() && span.span_id == place.span_id
                || ids.contains(&span.parent.as_str()),
            "{span:?} hangs under a span outside the trace"
        );
    }
    // messaging attributes (OTel messaging conventions)
    for (name, kind, operation) in [
        (
            "publish inventory.commands.reserve",
            SpanKind::Producer,
            "send",
        ),
        (
            "publish payment.commands.authorize",
            SpanKind::Producer,
            "send",
        ),
        (
            "process inventory.commands.reserve",
            SpanKind::Consumer,
            "process",
        ),
        (
            "process payment.replies.authorized",
            SpanKind::Consumer,
            "process",
        ),
    ] {
        let span = named(name);
        assert_eq!(span.kind, kind, "{name}");
        assert_eq!(span.attributes["messaging.system"], "nats", "{name}");
        assert_eq!(
            span.attributes["messaging.operation.type"], operation,
            "{name}"
        );
        let subject = name.split_once(' ').expect("name").1;
        assert_eq!(
            span.attributes["messaging.destination.name"],
            format!("{prefix}{subject}"),
            "{name}"
        );
        assert!(
            !span.attributes["messaging.message.id"].is_empty(),
            "{name}: {span:?}"
        );
    }

    // the commands on NATS carry the trace, in the producer span's context
    let nats = order_service::nats::Nats::connect(
        &std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
        &test_nats_settings(&prefix),
    )
    .await
    .expect("nats");
    let commands = nats
        .js
        .get_stream(nats.stream_name(order_service::nats::SAGA_COMMANDS))
        .await
        .expect("commands stream");
    for subject in ["inventory.commands.reserve", "payment.commands.authorize"] {
        let message = commands
            .get_last_raw_message_by_subject(&format!("{prefix}{subject}"))
            .await
            .expect("the command");
        let traceparent = message
            .headers
            .get("traceparent")
            .expect("a traceparent")
            .as_str()
            .to_owned();
        let producer = named(&format!("publish {subject}"));
        assert_eq!(
            traceparent,
            format!("00-{trace}-{}-01", producer.span_id),
            "{subject}"
        );
    }

    // the JSON logs of that work name the trace
    let logs = service.logs.lock().expect("logs").clone();
    let traced: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["trace_id"] == trace.as_str())
        .collect();
    assert!(
        !traced.is_empty(),
        "no log line of trace {trace}: {:#?}",
        &logs[..logs.len().min(20)]
    );
    for line in &traced {
        let span_id = line["span_id"].as_str().expect("span_id");
        assert!(ids.contains(&span_id), "{line}");
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }

    // SIGTERM: what is buffered is flushed before the process ends
    let pid = i32::try_from(service.child.id().expect("pid")).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = tokio::time::timeout(Duration::from_secs(30), service.child.wait())
        .await
        .expect("stopped in time")
        .expect("status");
    assert!(status.success(), "{status:?}");
    // cleanup of the test's streams
    for stream in [
        order_service::nats::ORDER_EVENTS,
        order_service::nats::SAGA_COMMANDS,
        order_service::nats::SAGA_REPLIES,
        order_service::nats::DEAD_LETTERS,
    ] {
        let _ = nats.js.delete_stream(nats.stream_name(stream)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_is_one_trace_from_the_http_request_to_the_confirmation_over_otlp_http() {
    one_trace_per_saga("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_is_one_trace_over_otlp_grpc_too() {
    one_trace_per_saga("grpc").await;
}
