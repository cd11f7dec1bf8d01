//! JSON log lines that name their trace: one object per line with `timestamp`, `level`,
//! `target`, the event's fields (`message` among them), the current span's name and fields,
//! and `trace_id` / `span_id` of the innermost span the OpenTelemetry layer knows, so a log
//! search jumps to the trace and back.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of `LogFormat::Json`; span fields are recorded with [`JsonFields`].
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonWithTrace;

impl<S> FormatEvent<S, JsonFields> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut Fields(&mut line));
        if let Some(current) = ctx.lookup_current() {
            let mut span = Map::new();
            span.insert("name".into(), current.name().into());
            if let Some(fields) = current.extensions().get::<FormattedFields<JsonFields>>() {
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    span.extend(fields);
                }
            }
            line.insert("span".into(), Value::Object(span));
            let ids = tracing::dispatcher::get_default(|dispatch| {
                current.scope().find_map(|s| {
                    tracing_opentelemetry::get_otel_context(&s.id(), dispatch)
                        .as_ref()
                        .and_then(super::trace_context::ids)
                })
            });
            if let Some((trace_id, span_id)) = ids {
                line.insert("trace_id".into(), trace_id.into());
                line.insert("span_id".into(), span_id.into());
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields into the line.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
