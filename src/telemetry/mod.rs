//! Telemetry: logs on standard error (human-readable, coloured only on a terminal, or
//! JSON with the trace and span ids of the span they are written in), traces and
//! metrics over OTLP/gRPC to the OpenTelemetry conventions.
//!
//! Everything follows the standard `OTEL_*` variables: traces are exported when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set,
//! metrics when it or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is; `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_METRIC_EXPORT_INTERVAL`
//! and the rest are honoured; `OTEL_SDK_DISABLED=true` turns both off. A caller's W3C
//! `traceparent`/`tracestate` is continued. An exporter that cannot reach its endpoint
//! says so once, at WARN, and again only after it has reached it.

mod exporters;
mod json;
pub mod metrics;

use std::io::IsTerminal;

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator, trace::SdkTracerProvider,
};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::configuration::LogFormat;

/// Flushes exported telemetry when dropped at the end of `main`.
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing OpenTelemetry spans failed: {e}");
        }
        if let Some(provider) = self.meter.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing OpenTelemetry metrics failed: {e}");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// The service's resource: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, telemetry SDK), with the service's own name unless one
/// was given.
fn resource() -> Resource {
    let named = env_set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let builder = Resource::builder();
    if named { builder.build() } else { builder.with_service_name("partnership-metrics").build() }
}

/// Where each signal goes, from the environment.
struct Exports {
    traces: Option<String>,
    metrics: Option<String>,
}

fn exports() -> Exports {
    if env_is("OTEL_SDK_DISABLED", "true") {
        return Exports { traces: None, metrics: None };
    }
    let endpoint = |specific: &str| {
        [specific, "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .into_iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    };
    Exports {
        traces: endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .filter(|_| !env_is("OTEL_TRACES_EXPORTER", "none")),
        metrics: endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .filter(|_| !env_is("OTEL_METRICS_EXPORTER", "none")),
    }
}

/// Installs the global subscriber, propagator and providers. Call once, at start-up,
/// inside the runtime (the exporters' channels need one).
pub fn init(format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(json::JsonLines)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let exports = exports();
    let resource = resource();
    let tracer = match &exports.traces {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| anyhow::anyhow!("building the OTLP span exporter for {endpoint}: {e}"))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporters::Watched::new(exporter, "spans", endpoint))
                    .with_resource(resource.clone())
                    .build(),
            )
        }
        // JSON logs carry trace ids, so spans get them even when nothing is exported.
        None if format == LogFormat::Json => {
            Some(SdkTracerProvider::builder().with_resource(resource.clone()).build())
        }
        None => None,
    };
    let meter = match &exports.metrics {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| anyhow::anyhow!("building the OTLP metric exporter for {endpoint}: {e}"))?;
            let provider = SdkMeterProvider::builder()
                .with_periodic_exporter(exporters::Watched::new(exporter, "metrics", endpoint))
                .with_resource(resource)
                .build();
            global::set_meter_provider(provider.clone());
            Some(provider)
        }
        None => None,
    };
    let otel =
        tracer.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("partnership-metrics")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the tracing subscriber: {e}"))?;
    Ok(TelemetryGuard { tracer, meter })
}

/// Reads W3C trace context from request headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's trace context (`traceparent`, `tracestate`), to continue.
pub fn caller_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}
