//! OTLP exporters that say when they cannot reach their endpoint: once, at WARN, when
//! an export first fails, and once, at INFO, when one succeeds again. The SDK's own
//! reports are off (its internal logs would repeat every export interval, and would
//! go through the very exporter that fails).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
    trace::{SpanData, SpanExporter},
};
use tracing::{info, warn};

/// An exporter and whether its endpoint was last unreachable.
#[derive(Debug)]
pub struct Watched<E> {
    inner: E,
    signal: &'static str,
    endpoint: String,
    failing: Arc<AtomicBool>,
}

impl<E> Watched<E> {
    pub fn new(inner: E, signal: &'static str, endpoint: &str) -> Self {
        Watched { inner, signal, endpoint: endpoint.to_string(), failing: Arc::default() }
    }

    fn observe(&self, result: &OTelSdkResult) {
        match result {
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    warn!(
                        signal = self.signal,
                        endpoint = %self.endpoint,
                        error = %e,
                        "cannot export telemetry to the OTLP endpoint; will keep trying, and say when it works"
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    info!(signal = self.signal, endpoint = %self.endpoint, "exporting telemetry to the OTLP endpoint again");
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.observe(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.observe(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
