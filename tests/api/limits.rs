//! The edge: requests bigger or stranger than any valid one. Memory for a request is
//! bounded before it is decoded, an oversized or undecodable message gets the code
//! the gRPC status table gives, and a stream never ends OK with a batch unanswered.

use bytes::Bytes;
use partnership_metrics::pb::{self, ingest_records_response::Result as Ack, record::Kind};
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    fixtures::{self, rec, team},
    helpers::{assert_error, raw_stream, raw_unary, spawn_app},
};

const SUBMIT: &str = "/partnership.v1.SubmissionService/SubmitRecords";
const INGEST: &str = "/partnership.v1.SubmissionService/IngestRecords";

/// A SubmitRecordsRequest of `n` empty records, encoded by hand (two bytes each): no
/// client would build the vector.
fn empty_records(n: usize) -> Bytes {
    let mut wire = Vec::with_capacity(n * 2);
    for _ in 0..n {
        wire.extend_from_slice(&[0x12, 0x00]);
    }
    Bytes::from(wire)
}

fn batch(request_id: &str, records: Vec<pb::Record>) -> Bytes {
    Bytes::from(
        pb::IngestRecordsRequest { validate_only: false, request_id: request_id.into(), records }
            .encode_to_vec(),
    )
}

fn good() -> Vec<pb::Record> {
    vec![rec(Kind::BudgetContribution(fixtures::budget()))]
}

fn rejected(status: tonic_types::pb::Status) -> tonic::Status {
    tonic::Status::with_details(
        Code::from(status.code),
        status.message.clone(),
        status.encode_to_vec().into(),
    )
}

backend_test! {
    async fn a_64_mib_message_of_empty_records_is_refused_as_too_many_records() {
        let app = spawn_app().await;
        fixtures::registry(&app).await;
        let before = app.snapshot().await;
        // 64 MiB less the frame's own header: the largest message the server takes.
        let err = raw_unary(app.api(), SUBMIT, empty_records(((64 << 20) - 16) / 2)).await.unwrap_err();
        assert_error(&err, Code::InvalidArgument, "INVALID_RECORDS", &["records"]);
        assert!(err.message().contains("at most 10000 records (got 33554424)"), "{}", err.message());
        assert_eq!(app.snapshot().await, before, "nothing stored");
    }
}

backend_test! {
    async fn a_team_composition_of_more_than_1000_entries_is_refused() {
        let app = spawn_app().await;
        fixtures::registry(&app).await;
        let mut big = team();
        let entry = big.entries[0].clone();
        big.entries = (0..1001).map(|_| entry.clone()).collect();
        let before = app.snapshot().await;
        let err = app
            .submission()
            .submit_records(fixtures::submit_request("", vec![rec(Kind::BudgetContribution(fixtures::budget())), rec(Kind::TeamComposition(big))]))
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "INVALID_RECORDS", &["records[1].team_composition.entries"]);
        assert_eq!(app.snapshot().await, before);
    }
}

backend_test! {
    async fn an_oversized_batch_in_a_stream_is_rejected_and_the_stream_goes_on() {
        let app = spawn_app().await;
        fixtures::registry(&app).await;
        let mut too_many = vec![0x0a, 0x01, b'x'];
        too_many.extend_from_slice(&empty_records(10_001));
        let (answers, end) = raw_stream(
            app.api(),
            INGEST,
            vec![batch("a", good()), Bytes::from(too_many), batch("c", good())],
        )
        .await;
        assert_eq!(end.code(), Code::Ok, "{end:?}");
        let acks: Vec<pb::IngestRecordsResponse> =
            answers.iter().map(|b| pb::IngestRecordsResponse::decode(b.clone()).unwrap()).collect();
        assert_eq!(acks.len(), 3);
        assert!(matches!(acks[0].result, Some(Ack::Accepted(_))));
        let Some(Ack::Rejected(status)) = acks[1].result.clone() else { panic!("{:?}", acks[1]) };
        assert_eq!(acks[1].request_id, "x");
        assert_error(&rejected(status), Code::InvalidArgument, "INVALID_RECORDS", &["records"]);
        assert!(matches!(acks[2].result, Some(Ack::Accepted(_))));
    }
}

backend_test! {
    async fn an_undecodable_batch_ends_the_stream_naming_the_first_batch_not_taken() {
        let app = spawn_app().await;
        fixtures::registry(&app).await;
        // Field 2 says 5 bytes follow; one does.
        let malformed = Bytes::from_static(&[0x12, 0x05, 0x01]);
        let (answers, end) =
            raw_stream(app.api(), INGEST, vec![batch("a", good()), batch("b", good()), malformed, batch("d", good())]).await;
        assert_eq!(answers.len(), 2, "the batches before it are answered");
        assert_ne!(end.code(), Code::Ok, "never OK with a batch unanswered");
        assert_eq!(end.code(), Code::Internal, "the gRPC table: error parsing the request proto");
        let info = end.get_error_details().error_info().cloned().expect("ErrorInfo");
        assert_eq!(info.metadata["first_batch_not_taken"], "2");
        assert!(end.message().contains("resend from 2"), "{}", end.message());
    }
}
