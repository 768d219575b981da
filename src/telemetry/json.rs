//! One JSON object per log line: time, level, target, the event's fields, the span it
//! was written in (name and fields), and that span's OpenTelemetry `trace_id` and
//! `span_id`, so a log line can be found from a trace and a trace from a log line.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_string(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(crate::domain::Timestamp::now().to_rfc3339()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        line.insert("fields".into(), Value::Object(fields));
        // The event's span: its explicit parent, or the current span.
        if let Some(span) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            let mut current = Map::new();
            current.insert("name".into(), Value::from(span.name()));
            // The span's fields as the fmt layer formatted them (`key=value ...`).
            if let Some(formatted) = span.extensions().get::<FormattedFields<N>>()
                && !formatted.is_empty()
            {
                current.insert("fields".into(), Value::from(formatted.fields.as_str()));
            }
            line.insert("span".into(), Value::Object(current));
            let ids = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&span.id(), dispatch).map(|cx| {
                    let sc = cx.span().span_context().clone();
                    (sc.is_valid()).then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
                })
            });
            if let Some(Some((trace_id, span_id))) = ids {
                line.insert("trace_id".into(), Value::from(trace_id));
                line.insert("span_id".into(), Value::from(span_id));
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}
