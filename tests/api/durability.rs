//! Crash and restart, as PostgreSQL's own recovery tests do it: a real server process
//! killed with SIGKILL again and again in the middle of an IngestRecords stream and
//! restarted on the same database. Every acknowledged batch must be stored, and no
//! batch stored in part.

use std::collections::{BTreeMap, BTreeSet};

use partnership_metrics::{
    cli::load,
    pb::{
        self, ingest_records_response::Result as Ack, record::Kind,
        submission_service_client::SubmissionServiceClient,
    },
};

use crate::{
    e2e::Server,
    fixtures::{rec, survey},
    helpers::{TestDatabase, current_backend},
};

const CYCLES: usize = 20;
const RECORDS_PER_BATCH: usize = 20;

fn batch(cycle: usize, b: usize) -> pb::IngestRecordsRequest {
    let records = (0..RECORDS_PER_BATCH)
        .map(|k| {
            let mut s = survey();
            s.response_id = format!("c{cycle}-b{b}-k{k}");
            rec(Kind::SurveyResponse(s))
        })
        .collect();
    pb::IngestRecordsRequest { validate_only: false, request_id: format!("crash-{cycle}-{b}"), records }
}

backend_test! {
    async fn a_server_killed_mid_stream_keeps_every_acknowledged_batch_and_no_partial_one() {
        let db = TestDatabase::new(current_backend()).await;
        let start = || Server::start_on(&db.url, tempfile::tempdir().unwrap(), &[]);
        let server = start();
        let channel = load::connect(&format!("http://{}", server.addr)).await.unwrap();
        let mut registry = pb::registry_service_client::RegistryServiceClient::new(channel);
        registry
            .create_agency(pb::CreateAgencyRequest {
                agency_id: "nhs-a".into(),
                agency: Some(pb::Agency { display_name: "NHS A".into(), sector: pb::Sector::NhsBody as i32, ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .unwrap();
        registry
            .create_partnership(pb::CreatePartnershipRequest {
                partnership_id: "pa".into(),
                partnership: Some(pb::Partnership { display_name: "PA".into(), ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .unwrap();
        drop(server);

        let mut acked: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut sent: BTreeSet<(usize, usize)> = BTreeSet::new();
        for cycle in 0..CYCLES {
            let mut server = start();
            let channel = load::connect(&format!("http://{}", server.addr)).await.unwrap();
            let mut client = SubmissionServiceClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let mut acks = client.ingest_records(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
            let producer = tokio::spawn(async move {
                let mut n = 0;
                while tx.send(batch(cycle, n)).await.is_ok() {
                    n += 1;
                }
                n
            });
            // Kill after a few acknowledgements, at a point that varies by cycle.
            let kill_after = 1 + cycle % 4;
            let mut got = 0;
            while let Ok(Some(ack)) = acks.message().await {
                assert!(matches!(ack.result, Some(Ack::Accepted(_))), "{ack:?}");
                acked.insert((cycle, ack.batch_index as usize));
                got += 1;
                if got == kill_after {
                    server.child.kill().unwrap();
                    let _ = server.child.wait();
                    break;
                }
            }
            let _ = acks.message().await;
            drop(acks);
            let produced = producer.await.unwrap();
            sent.extend((0..produced).map(|b| (cycle, b)));
        }

        let server = start();
        let channel = load::connect(&format!("http://{}", server.addr)).await.unwrap();
        let mut client = SubmissionServiceClient::new(channel);
        let mut stored: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_records(pb::ListRecordsRequest { kind: pb::RecordKind::SurveyResponse as i32, page_size: 1000, page_token: token, ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            for r in &page.records {
                let Some(Kind::SurveyResponse(s)) = &r.record.as_ref().unwrap().kind else { continue };
                let mut parts = s.response_id.trim_start_matches('c').split("-b");
                let cycle: usize = parts.next().unwrap().parse().unwrap();
                let b: usize = parts.next().unwrap().split("-k").next().unwrap().parse().unwrap();
                *stored.entry((cycle, b)).or_default() += 1;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        for key in &acked {
            assert_eq!(stored.get(key), Some(&RECORDS_PER_BATCH), "acknowledged batch {key:?} is stored whole");
        }
        for (key, n) in &stored {
            assert_eq!(*n, RECORDS_PER_BATCH, "batch {key:?} is stored whole or not at all");
            assert!(sent.contains(key));
        }
        assert!(acked.len() >= CYCLES, "every cycle acknowledged batches before the kill");
        // The audit chain survived every crash.
        drop(server);
        let chain = partnership_metrics::storage::verify_audit(&db.url).await.unwrap();
        assert!(chain.is_ok(), "{chain:?}");
    }
}
