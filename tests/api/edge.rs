//! The edge, from a raw HTTP/2 client: bytes no gRPC client would send get exact
//! codes (the gRPC status table) with an `ErrorInfo`, and the server stays healthy;
//! load beyond the limits is shed at once with RetryInfo; deadlines end calls with
//! DEADLINE_EXCEEDED; connections are capped and timed out.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use partnership_metrics::pb;
use prost::Message;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

use crate::{
    fixtures,
    helpers::{TestApp, current_backend, spawn_app, spawn_app_configured},
};

/// A gRPC message: the 5-byte prefix (flag, big-endian length) and the bytes.
fn frame(flag: u8, declared: u32, bytes: &[u8]) -> Bytes {
    let mut v = vec![flag];
    v.extend_from_slice(&declared.to_be_bytes());
    v.extend_from_slice(bytes);
    Bytes::from(v)
}

fn message(m: &impl Message) -> Bytes {
    let bytes = m.encode_to_vec();
    frame(0, bytes.len() as u32, &bytes)
}

/// What came back: the status (from headers or trailers) and the message bytes.
#[derive(Debug)]
struct Answer {
    status: tonic::Status,
    body: Vec<u8>,
}

/// One call over a fresh HTTP/2 connection: the request's data frames as given
/// (`end` closes the request stream after them), extra headers, and the answer.
async fn raw_call(
    app: &TestApp,
    path: &str,
    data: Vec<Bytes>,
    end: bool,
    headers: &[(&str, &str)],
) -> Answer {
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::post(format!("http://{}{path}", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let (response, mut send) =
        client.send_request(request.body(()).unwrap(), data.is_empty() && end).expect("send");
    let n = data.len();
    for (i, d) in data.into_iter().enumerate() {
        send.send_data(d, end && i + 1 == n).expect("send data");
    }
    let response = response.await.expect("a response");
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let status = tonic::Status::from_header_map(&parts.headers)
        .or_else(|| tonic::Status::from_header_map(&trailers))
        .unwrap_or_else(|| tonic::Status::unknown("no grpc-status"));
    drop(send);
    Answer { status, body: bytes }
}

fn reason_of(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_else(|| "<no ErrorInfo>".into())
}

async fn assert_healthy(app: &TestApp) {
    let answer = HealthClient::new(app.channel_with_no_token())
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers");
    assert_eq!(answer.into_inner().status, 1, "SERVING");
}

const RPCS: [&str; 16] = [
    "/partnership.v1.RegistryService/CreateAgency",
    "/partnership.v1.RegistryService/GetAgency",
    "/partnership.v1.RegistryService/ListAgencies",
    "/partnership.v1.RegistryService/CreatePartnership",
    "/partnership.v1.RegistryService/GetPartnership",
    "/partnership.v1.RegistryService/ListPartnerships",
    "/partnership.v1.RegistryService/CreateMembership",
    "/partnership.v1.RegistryService/UpdateMembership",
    "/partnership.v1.RegistryService/ListMemberships",
    "/partnership.v1.SubmissionService/SubmitRecords",
    "/partnership.v1.SubmissionService/IngestRecords",
    "/partnership.v1.SubmissionService/ListRecords",
    "/partnership.v1.SubmissionService/ListRecordRevisions",
    "/partnership.v1.ReportService/GetPartnershipReport",
    "/partnership.v1.ReportService/ListPartnershipReports",
    "/partnership.v1.ReportService/ExportReports",
];

/// A bad request: what it is, its data frames, whether the stream ends after them,
/// extra headers, and the expected code and reason.
type Case = (&'static str, Vec<Bytes>, bool, Vec<(&'static str, &'static str)>, Code, &'static str);

/// The answer to an empty (all-defaults) request message, per RPC.
fn empty_request_answer(path: &str) -> (Code, &'static str) {
    match path.rsplit('/').next().unwrap_or_default() {
        "ListAgencies" | "ListPartnerships" | "ListRecords" => (Code::Ok, ""),
        // A stream: the empty batch is rejected in its acknowledgement.
        "IngestRecords" => (Code::Ok, ""),
        "SubmitRecords" => (Code::InvalidArgument, "INVALID_RECORDS"),
        "GetPartnershipReport" | "ListPartnershipReports" | "ExportReports" => {
            (Code::InvalidArgument, "INVALID_REPORT_REQUEST")
        }
        _ => (Code::InvalidArgument, "INVALID_REQUEST"),
    }
}

backend_test! {
    async fn a_corpus_of_bad_bytes_gets_exact_codes_and_the_server_stays_healthy() {
        let app = spawn_app().await;
        fixtures::registry(&app).await;
        let before = app.snapshot().await;
        for path in RPCS {
            let cases: Vec<Case> = vec![
                // Field 1 says five bytes follow; one does.
                ("malformed protobuf", vec![frame(0, 3, &[0x0a, 0x05, 0x61])], true, vec![], Code::Internal, "MALFORMED_REQUEST"),
                ("a frame cut short", vec![frame(0, 10, &[0x0a, 0x01])], true, vec![], Code::Internal, "MALFORMED_REQUEST"),
                ("a declared length over the limit", vec![frame(0, 100 << 20, &[])], false, vec![], Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
                ("compressed without grpc-encoding", vec![frame(1, 0, &[])], true, vec![], Code::Internal, "MALFORMED_REQUEST"),
                ("an unknown compression flag", vec![frame(7, 0, &[])], true, vec![], Code::Internal, "MALFORMED_REQUEST"),
                ("an unsupported grpc-encoding", vec![frame(1, 0, &[])], true, vec![("grpc-encoding", "snappy")], Code::Unimplemented, "NOT_IMPLEMENTED"),
            ];
            for (what, data, end, headers, code, reason) in cases {
                let answer = raw_call(&app, path, data, end, &headers).await;
                assert_eq!(answer.status.code(), code, "{path}: {what}: {:?}", answer.status);
                assert_eq!(reason_of(&answer.status), reason, "{path}: {what}: {:?}", answer.status);
                assert_healthy(&app).await;
            }
            let (code, reason) = empty_request_answer(path);
            let answer = raw_call(&app, path, vec![frame(0, 0, &[])], true, &[]).await;
            assert_eq!(answer.status.code(), code, "{path}: an empty request: {:?}", answer.status);
            if code != Code::Ok {
                assert_eq!(reason_of(&answer.status), reason, "{path}: an empty request");
            }
            if path.ends_with("/IngestRecords") {
                let ack = pb::IngestRecordsResponse::decode(&answer.body[5..]).expect("an acknowledgement");
                assert!(matches!(ack.result, Some(pb::ingest_records_response::Result::Rejected(_))), "{ack:?}");
            }
            let unary = !path.ends_with("/IngestRecords");
            if unary {
                // No message at all: the table's cardinality violation.
                let answer = raw_call(&app, path, vec![], true, &[]).await;
                assert_eq!(answer.status.code(), Code::Unimplemented, "{path}: no message: {:?}", answer.status);
                assert_eq!(reason_of(&answer.status), "MALFORMED_REQUEST");
            }
        }
        let garbage = pb::ListAgenciesRequest { page_size: 10, page_token: "!!not a token!!".into() };
        let answer = raw_call(&app, RPCS[2], vec![message(&garbage)], true, &[]).await;
        assert_eq!(answer.status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&answer.status), "INVALID_PAGE_TOKEN");
        let unknown = raw_call(&app, "/partnership.v1.RegistryService/DropEverything", vec![frame(0, 0, &[])], true, &[]).await;
        assert_eq!(unknown.status.code(), Code::Unimplemented);
        assert_eq!(app.snapshot().await, before, "nothing of it was stored");
        assert_healthy(&app).await;
    }
}

/// Opens a call on its own connection and leaves it in progress: its request
/// message is announced but never sent whole. Dropping the result ends it.
async fn hold_call(app: &TestApp, path: &str) -> impl Drop {
    /// The connection and the half-sent request, kept open until dropped.
    struct Held {
        _client: h2::client::SendRequest<Bytes>,
        _send: h2::SendStream<Bytes>,
        connection: tokio::task::JoinHandle<()>,
    }
    impl Drop for Held {
        fn drop(&mut self) {
            self.connection.abort();
        }
    }
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::post(format!("http://{}{path}", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (_response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(frame(0, 100, &[0x12]), false).unwrap();
    Held { _client: client, _send: send, connection: conn }
}

fn assert_shed(err: &tonic::Status, limit: &str) {
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let details = err.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.reason, "OVERLOADED");
    assert_eq!(info.metadata[limit], "4");
    assert!(details.retry_info().and_then(|r| r.retry_delay).is_some(), "RetryInfo says when to retry");
}

backend_test! {
    async fn calls_beyond_the_limits_are_shed_at_once_with_retry_info_and_health_stays_serving() {
        let app = spawn_app_configured(current_backend(), |s| {
            s.limits.max_in_flight = 4;
            s.limits.max_streams = 4;
        })
        .await;
        fixtures::registry(&app).await;
        // Four unary calls in progress hold the four unary places...
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(hold_call(&app, "/partnership.v1.SubmissionService/SubmitRecords").await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..20 {
            let err = app.registry().list_agencies(pb::ListAgenciesRequest::default()).await.unwrap_err();
            assert_shed(&err, "max_in_flight");
        }
        // ...while streams have places of their own: four of them, then shed too.
        for _ in 0..4 {
            held.push(hold_call(&app, "/partnership.v1.SubmissionService/IngestRecords").await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = raw_call(&app, "/partnership.v1.ReportService/ExportReports", vec![frame(0, 0, &[])], true, &[]).await;
        assert_shed(&answer.status, "max_streams");
        assert_healthy(&app).await;
        // Load gone, service back at once.
        drop(held);
        let mut ok = false;
        for _ in 0..50 {
            if app.registry().list_agencies(pb::ListAgenciesRequest::default()).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the server recovers when the load stops");
    }
}

backend_test! {
    async fn a_caller_deadline_ends_the_call_with_deadline_exceeded() {
        let app = spawn_app().await;
        fixtures::registry(&app).await;
        let before = app.snapshot().await;
        // Half a message, then silence: the server waits for the rest until the
        // caller's deadline.
        let answer = raw_call(
            &app,
            "/partnership.v1.SubmissionService/SubmitRecords",
            vec![frame(0, 100, &[0x12, 0x00])],
            false,
            &[("grpc-timeout", "200m")],
        )
        .await;
        assert_eq!(answer.status.code(), Code::DeadlineExceeded, "{:?}", answer.status);
        assert_eq!(reason_of(&answer.status), "DEADLINE_EXCEEDED");
        assert_eq!(app.snapshot().await, before);
        assert_healthy(&app).await;
    }
}

backend_test! {
    async fn request_messages_share_a_memory_budget() {
        // 1 MiB for all messages being received at once.
        let app = spawn_app_configured(current_backend(), |s| s.limits.request_memory_bytes = 1 << 20).await;
        let tcp = TcpStream::connect(app.addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // One caller announces 900 KiB and sends a little of it...
        let request = Request::post(format!("http://{}/partnership.v1.SubmissionService/SubmitRecords", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (_pending, mut send) = client.send_request(request, false).unwrap();
        send.send_data(frame(0, 900 << 10, &[0x12, 0x00]), false).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...so another's 200 KiB does not fit now.
        let answer = raw_call(
            &app,
            "/partnership.v1.SubmissionService/SubmitRecords",
            vec![frame(0, 200 << 10, &[0x12, 0x00])],
            false,
            &[],
        )
        .await;
        assert_eq!(answer.status.code(), Code::ResourceExhausted, "{:?}", answer.status);
        assert_eq!(reason_of(&answer.status), "MEMORY_BUDGET");
        assert!(answer.status.get_error_details().retry_info().is_some());
        drop(send);
        assert_healthy(&app).await;
    }
}

#[tokio::test]
async fn connections_are_capped_and_silent_or_idle_ones_closed() {
    let app = spawn_app_configured(current_backend(), |s| {
        s.limits.max_connections = 2;
        s.limits.handshake_timeout = Duration::from_millis(300);
        s.limits.idle_timeout = Duration::from_millis(600);
    })
    .await;
    // Two silent connections take the two places; a third is closed at once.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(third, Duration::from_millis(200)).await, "over the cap: closed");
    // The silent ones are closed after the handshake timeout, freeing their places.
    for s in silent {
        assert!(closed_within(s, Duration::from_secs(3)).await, "silent: closed");
    }
    // A connection that made a call and went idle is closed after the idle timeout.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(connection);
    let request = Request::post(format!("http://{}/partnership.v1.RegistryService/ListAgencies", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(frame(0, 0, &[]), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle connection was closed by the server");
}

/// Whether the server closes the connection (EOF or reset) within `within`.
async fn closed_within(mut s: TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // The server's HTTP/2 preface or settings; keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

#[test]
fn the_largest_valid_batch_fits_the_message_limit() {
    use partnership_metrics::{pb::record::Kind, startup::MAX_MESSAGE_BYTES};
    let id = "x".repeat(63);
    let name: String = "\u{10348}".repeat(1024); // four bytes each in UTF-8
    let contract = pb::Record {
        kind: Some(Kind::ServiceContract(pb::ServiceContract {
            partnership: id.clone(),
            contract_id: id.clone(),
            service_name: name.clone(),
            commissioner: id.clone(),
            provider: id.clone(),
            delivery: pb::Delivery::Outsourced as i32,
            annual_value_pence: i64::MAX,
            start_date: "9999-12-31".into(),
            end_date: "9999-12-31".into(),
        })),
    };
    let adoption = pb::Record {
        kind: Some(Kind::PrinciplesAdoption(pb::PrinciplesAdoption {
            partnership: id.clone(),
            version: i64::MAX,
            title: name,
            adoption_date: "9999-12-31".into(),
            reporting_agency: id.clone(),
        })),
    };
    let largest = contract.encoded_len().max(adoption.encoded_len());
    let batch = pb::SubmitRecordsRequest {
        validate_only: false,
        request_id: "x".repeat(128),
        records: vec![contract; 10_000],
    };
    let size = batch.encoded_len();
    assert!(largest < 4400, "a record is at most {largest} bytes");
    assert!(size < MAX_MESSAGE_BYTES, "the largest valid batch, {size} bytes, fits");
    assert!(MAX_MESSAGE_BYTES < 2 * size, "and the limit is not far above it");
    // Team compositions hold at most 100,000 entries in all, each at most this long.
    let entry = pb::TeamEntry { employer: id, employment: 3, headcount: i64::MAX };
    assert!(100_000 * (entry.encoded_len() + 3) < MAX_MESSAGE_BYTES / 4);
}
