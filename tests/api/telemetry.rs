//! Telemetry against a real OTLP/gRPC receiver (the OpenTelemetry collector's
//! service definitions, served here by tonic): the binary, configured only through
//! the standard `OTEL_*` variables, sends its spans and metrics; the test asserts
//! span names, kinds and attributes, that a caller's trace is continued, child spans,
//! the resource, each metric with plausible values, and trace ids in the JSON logs.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{KeyValue, any_value::Value},
    metrics::v1::{metric::Data, number_data_point},
    trace::v1::{Span, span::SpanKind},
};
use partnership_metrics::{
    cli::load,
    pb::{
        self, record::Kind, registry_service_client::RegistryServiceClient,
        report_service_client::ReportServiceClient, submission_service_client::SubmissionServiceClient,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    e2e::Server,
    fixtures::{budget, rec},
};

#[derive(Debug, Default, Clone)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port; returns what it receives and its address.
async fn receiver() -> (Received, String) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (t, m) = (received.clone(), received.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(t))
            .add_service(MetricsServiceServer::new(m))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (received, format!("http://{addr}"))
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn text<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traced<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap());
    r
}

/// Every span received so far, with the resource attributes it came under.
fn spans(received: &Received) -> Vec<(Vec<KeyValue>, Span)> {
    let mut out = Vec::new();
    for request in received.traces.lock().unwrap().iter() {
        for rs in &request.resource_spans {
            let resource = rs.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push((resource.clone(), span.clone()));
                }
            }
        }
    }
    out
}

/// The latest value of each metric data point, by metric name: (attributes, value).
fn metric_points(received: &Received, name: &str) -> Vec<(Vec<KeyValue>, f64)> {
    let mut out = Vec::new();
    for request in received.metrics.lock().unwrap().iter() {
        for rm in &request.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == name) {
                    match &m.data {
                        Some(Data::Sum(s)) => out.extend(s.data_points.iter().map(|p| {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                None => f64::NAN,
                            };
                            (p.attributes.clone(), v)
                        })),
                        Some(Data::Gauge(g)) => out.extend(g.data_points.iter().map(|p| {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                None => f64::NAN,
                            };
                            (p.attributes.clone(), v)
                        })),
                        Some(Data::Histogram(h)) => {
                            out.extend(h.data_points.iter().map(|p| (p.attributes.clone(), p.count as f64)))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    out
}

const METRICS: [&str; 10] = [
    "rpc.server.duration",
    "partnership_metrics.records.accepted",
    "partnership_metrics.records.rejected",
    "partnership_metrics.batches.committed",
    "partnership_metrics.ingest.streams.open",
    "partnership_metrics.requests.shed",
    "partnership_metrics.report_cache.hits",
    "partnership_metrics.report_cache.misses",
    "db.client.connection.count",
    "db.client.connection.wait_time",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_log_ids_reach_a_real_otlp_receiver() {
    let (received, endpoint) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("otel.db").display());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", "pm-telemetry-test".to_string()),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        // One stream at a time, so that a second is shed.
        ("PM_MAX_STREAMS", "1".to_string()),
    ];
    let server = Server::start_with(&url, dir, "127.0.0.1:0", &[], &env);
    let channel = load::connect(&format!("http://{}", server.addr)).await.unwrap();
    let mut registry = RegistryServiceClient::new(channel.clone());
    for a in ["nhs-a", "la-b"] {
        registry
            .create_agency(pb::CreateAgencyRequest {
                agency_id: a.into(),
                agency: Some(pb::Agency { display_name: a.into(), sector: 1, ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    registry
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "pa".into(),
            partnership: Some(pb::Partnership { display_name: "PA".into(), ..Default::default() }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    registry
        .create_membership(pb::CreateMembershipRequest {
            parent: "partnerships/pa".into(),
            membership: Some(pb::Membership {
                agency: "nhs-a".into(),
                role: pb::Role::Lead as i32,
                start_date: "2020-01-01".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut submission = SubmissionServiceClient::new(channel.clone());
    submission
        .submit_records(traced(pb::SubmitRecordsRequest {
            validate_only: false,
            request_id: String::new(),
            records: vec![rec(Kind::BudgetContribution(budget()))],
        }))
        .await
        .unwrap();
    let mut bad = budget();
    bad.pooled_pence = -1;
    submission
        .submit_records(pb::SubmitRecordsRequest {
            validate_only: false,
            request_id: String::new(),
            records: vec![rec(Kind::BudgetContribution(bad))],
        })
        .await
        .unwrap_err();
    // A stream held open takes the one place; a second is shed.
    let (hold_tx, hold_rx) = tokio::sync::mpsc::channel::<pb::IngestRecordsRequest>(1);
    let mut held = submission.clone();
    let held_stream = tokio::spawn(async move {
        let mut acks = held
            .ingest_records(tokio_stream::wrappers::ReceiverStream::new(hold_rx))
            .await
            .unwrap()
            .into_inner();
        while acks.message().await.unwrap().is_some() {}
    });
    let mut second = Err(Status::unknown("not tried"));
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        second = submission
            .ingest_records(tokio_stream::iter(Vec::<pb::IngestRecordsRequest>::new()))
            .await
            .map(drop);
        if second.as_ref().is_err_and(|e| e.code() == tonic::Code::ResourceExhausted) {
            break;
        }
    }
    assert_eq!(second.unwrap_err().code(), tonic::Code::ResourceExhausted);
    let mut b = budget();
    b.period = "2026Q2".into();
    hold_tx
        .send(pb::IngestRecordsRequest {
            validate_only: false,
            request_id: String::new(),
            records: vec![rec(Kind::BudgetContribution(b))],
        })
        .await
        .unwrap();
    drop(hold_tx);
    held_stream.await.unwrap();
    let mut reports = ReportServiceClient::new(channel.clone());
    for _ in 0..2 {
        let ask = pb::GetPartnershipReportRequest {
            partnership: "pa".into(),
            period: "2026Q3".into(),
            ..Default::default()
        };
        reports.get_partnership_report(traced(ask)).await.unwrap();
    }

    // Wait for everything to arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    let report_span = loop {
        let all = spans(&received);
        let found = all.iter().find(|(_, s)| {
            s.name == "partnership.v1.ReportService/GetPartnershipReport" && hex(&s.trace_id) == TRACE_ID
        });
        let metrics_in = METRICS.iter().all(|m| !metric_points(&received, m).is_empty());
        let hits =
            metric_points(&received, "partnership_metrics.report_cache.hits").iter().any(|(_, v)| *v >= 1.0);
        if let (Some(f), true, true) = (found, metrics_in, hits) {
            break f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "telemetry did not arrive: {} spans, metrics {:?}",
            all.len(),
            METRICS.iter().map(|m| (m, metric_points(&received, m).len())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The server span: the conventions' name, kind and attributes, the caller's parent.
    let (resource, span) = &report_span;
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID, "the caller's span is the parent");
    assert_eq!(text(&span.attributes, "rpc.system"), Some("grpc"));
    assert_eq!(text(&span.attributes, "rpc.service"), Some("partnership.v1.ReportService"));
    assert_eq!(text(&span.attributes, "rpc.method"), Some("GetPartnershipReport"));
    assert_eq!(int(&span.attributes, "rpc.grpc.status_code"), Some(0));
    assert_eq!(text(&span.attributes, "server.address"), Some("127.0.0.1"));
    assert!(int(&span.attributes, "server.port").is_some_and(|p| p > 0), "{:?}", span.attributes);
    assert_eq!(text(resource, "service.name"), Some("pm-telemetry-test"));
    assert_eq!(text(resource, "deployment.environment.name"), Some("test"));
    // Its children: the report-data read and the computation, in the caller's trace.
    let all = spans(&received);
    let children: Vec<&str> =
        all.iter().filter(|(_, s)| s.parent_span_id == span.span_id).map(|(_, s)| s.name.as_str()).collect();
    assert!(
        children.contains(&"storage.report_data") && children.contains(&"report.compute"),
        "{children:?}"
    );
    let submit = all
        .iter()
        .find(|(_, s)| {
            s.name == "partnership.v1.SubmissionService/SubmitRecords" && hex(&s.trace_id) == TRACE_ID
        })
        .expect("the traced SubmitRecords span");
    let mut descendants = vec![submit.1.span_id.clone()];
    let mut found_tx = false;
    while let Some(id) = descendants.pop() {
        for (_, s) in all.iter().filter(|(_, s)| s.parent_span_id == id) {
            found_tx |= s.name == "storage.submit_records";
            descendants.push(s.span_id.clone());
        }
    }
    assert!(found_tx, "the storage transaction is a span within the call");
    // Non-server spans are not SERVER.
    assert!(
        all.iter()
            .filter(|(_, s)| s.name == "report.compute")
            .all(|(_, s)| s.kind != SpanKind::Server as i32)
    );

    // Metrics, with plausible values.
    let by = |name: &str, key: &str, value: &str| -> f64 {
        metric_points(&received, name)
            .iter()
            .filter(|(a, _)| text(a, key) == Some(value))
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    };
    assert!(by("rpc.server.duration", "rpc.method", "GetPartnershipReport") >= 2.0);
    assert!(by("partnership_metrics.records.accepted", "record.kind", "budget_contribution") >= 2.0);
    assert!(by("partnership_metrics.records.rejected", "record.kind", "budget_contribution") >= 1.0);
    assert!(metric_points(&received, "partnership_metrics.batches.committed").iter().any(|(_, v)| *v >= 2.0));
    assert!(by("partnership_metrics.requests.shed", "limit", "streams") >= 1.0);
    assert!(
        metric_points(&received, "partnership_metrics.report_cache.misses").iter().any(|(_, v)| *v >= 1.0)
    );
    assert!(
        metric_points(&received, "partnership_metrics.ingest.streams.open")
            .iter()
            .all(|(_, v)| (0.0..=1.0).contains(v))
    );
    assert!(by("db.client.connection.count", "db.client.connection.state", "idle") >= 0.0);
    assert!(metric_points(&received, "db.client.connection.wait_time").iter().any(|(_, n)| *n >= 1.0));

    // JSON logs: the call's line carries its trace and span ids.
    let logs = server.logs.lock().unwrap().clone();
    let with_trace = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["trace_id"] == TRACE_ID && j["fields"]["message"] == "rpc finished");
    let line = with_trace
        .unwrap_or_else(|| panic!("no log line with the trace id among {} lines: {logs:#?}", logs.len()));
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_otlp_endpoint_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("otel.db").display());
    let env = [
        // Nothing listens on port 1.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let server = Server::start_with(&url, dir, "127.0.0.1:0", &[], &env);
    let channel = load::connect(&format!("http://{}", server.addr)).await.unwrap();
    let mut registry = RegistryServiceClient::new(channel);
    for _ in 0..5 {
        registry.list_agencies(pb::ListAgenciesRequest::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let warnings = |signal: &str| {
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|j| j["level"] == "WARN" && j["fields"]["signal"] == signal)
            .count()
    };
    assert_eq!(warnings("metrics"), 1, "several failed metric exports, one warning");
    assert_eq!(warnings("spans"), 1, "several failed span exports, one warning");
}
