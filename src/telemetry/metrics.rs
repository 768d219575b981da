//! The service's metrics, recorded where things happen and exported over OTLP when
//! configured (a no-op otherwise). Names follow the OpenTelemetry semantic
//! conventions where they have one (`rpc.server.duration`,
//! `db.client.connection.count`, `db.client.connection.wait_time`); the service's own
//! are under `partnership_metrics.`.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram, ObservableGauge, UpDownCounter},
};

/// Connections of a database pool: what `db.client.connection.count` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub used: u64,
    pub idle: u64,
}

/// Something with a connection pool worth watching.
pub trait PoolObserved: Send + Sync {
    /// The pool's name (`db.client.connection.pool.name`).
    fn pool_name(&self) -> &'static str;
    fn pool_usage(&self) -> PoolUsage;
}

pub struct Metrics {
    rpc_duration: Histogram<f64>,
    records_accepted: Counter<u64>,
    records_rejected: Counter<u64>,
    batches_committed: Counter<u64>,
    ingest_streams: UpDownCounter<i64>,
    shed: Counter<u64>,
    cache_hits: Counter<u64>,
    cache_misses: Counter<u64>,
    connection_wait: Histogram<f64>,
    pools: OnceLock<ObservableGauge<u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The instruments, made from the global meter provider the first time they are
/// used (after `telemetry::init`).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = global::meter("partnership-metrics");
        Metrics {
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("Duration of inbound RPCs, until their last message or status")
                .with_boundaries(vec![
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                    10000.0,
                ])
                .build(),
            records_accepted: meter
                .u64_counter("partnership_metrics.records.accepted")
                .with_unit("{record}")
                .with_description("Records of committed batches, by kind")
                .build(),
            records_rejected: meter
                .u64_counter("partnership_metrics.records.rejected")
                .with_unit("{record}")
                .with_description("Records of rejected batches, by kind")
                .build(),
            batches_committed: meter
                .u64_counter("partnership_metrics.batches.committed")
                .with_unit("{batch}")
                .with_description("Batches of records committed")
                .build(),
            ingest_streams: meter
                .i64_up_down_counter("partnership_metrics.ingest.streams.open")
                .with_unit("{stream}")
                .with_description("IngestRecords streams open")
                .build(),
            shed: meter
                .u64_counter("partnership_metrics.requests.shed")
                .with_unit("{request}")
                .with_description("Requests refused at a limit (RESOURCE_EXHAUSTED), by limit")
                .build(),
            cache_hits: meter
                .u64_counter("partnership_metrics.report_cache.hits")
                .with_unit("{report}")
                .with_description("Reports served from the cache")
                .build(),
            cache_misses: meter
                .u64_counter("partnership_metrics.report_cache.misses")
                .with_unit("{report}")
                .with_description(
                    "Reports computed because the cache did not hold them at their data version",
                )
                .build(),
            connection_wait: meter
                .f64_histogram("db.client.connection.wait_time")
                .with_unit("s")
                .with_description("Time to obtain a database connection")
                .with_boundaries(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0])
                .build(),
            pools: OnceLock::new(),
        }
    })
}

impl Metrics {
    /// One finished RPC: its service, method and gRPC status code.
    pub fn rpc(&self, service: &'static str, method: &'static str, code: i32, elapsed: Duration) {
        self.rpc_duration.record(
            elapsed.as_secs_f64() * 1000.0,
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", method),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }

    /// A batch's records by kind, accepted (committed) or rejected.
    pub fn records(&self, accepted: bool, by_kind: &[(&'static str, u64)]) {
        let counter = if accepted { &self.records_accepted } else { &self.records_rejected };
        for &(kind, n) in by_kind {
            if n > 0 {
                counter.add(n, &[KeyValue::new("record.kind", kind)]);
            }
        }
        if accepted {
            self.batches_committed.add(1, &[]);
        }
    }

    /// An IngestRecords stream opened; it counts as open until the guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.ingest_streams.add(1, &[]);
        OpenStream(())
    }

    /// A request refused at `limit` (`in_flight`, `streams`, `memory`, `message_size`).
    pub fn shed(&self, limit: &'static str) {
        self.shed.add(1, &[KeyValue::new("limit", limit)]);
    }

    pub fn report_cache(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.cache_hits.add(hits, &[]);
        }
        if misses > 0 {
            self.cache_misses.add(misses, &[]);
        }
    }

    pub fn connection_wait(&self, pool: &'static str, waited: Duration) {
        self.connection_wait
            .record(waited.as_secs_f64(), &[KeyValue::new("db.client.connection.pool.name", pool)]);
    }

    /// Reports `db.client.connection.count` of this pool at every export.
    pub fn observe_pool(&self, pool: Arc<dyn PoolObserved>) {
        let _ = self.pools.get_or_init(|| {
            global::meter("partnership-metrics")
                .u64_observable_gauge("db.client.connection.count")
                .with_unit("{connection}")
                .with_description("Database connections, by state")
                .with_callback(move |observer| {
                    let usage = pool.pool_usage();
                    let name = KeyValue::new("db.client.connection.pool.name", pool.pool_name());
                    observer.observe(
                        usage.used,
                        &[name.clone(), KeyValue::new("db.client.connection.state", "used")],
                    );
                    observer
                        .observe(usage.idle, &[name, KeyValue::new("db.client.connection.state", "idle")]);
                })
                .build()
        });
    }
}

/// An open IngestRecords stream, for `partnership_metrics.ingest.streams.open`.
#[derive(Debug)]
pub struct OpenStream(());

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics().ingest_streams.add(-1, &[]);
    }
}
