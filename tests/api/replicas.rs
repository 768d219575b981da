//! Several stateless replicas over one PostgreSQL database, and the same reports on
//! both backends.

use std::collections::BTreeSet;

use partnership_metrics::cli::client::ApiChannel;
use partnership_metrics::{
    cli::{load, synth},
    pb::{self, record::Kind, submission_service_client::SubmissionServiceClient},
};
use tokio_stream::StreamExt;

use crate::{
    e2e::Server,
    fixtures::{rec, survey},
    helpers::{Backend, TestDatabase, spawn_app_on},
    worked,
};

async fn channel(addr: &str) -> ApiChannel {
    load::connect(&format!("http://{addr}")).await.expect("connect to a replica")
}

/// A batch of 30 survey responses drawn from a pool of 60 keys, each tagged with the
/// batch in its morale and loyalty so the final state shows which batch wrote last.
fn batch(i: usize) -> pb::SubmitRecordsRequest {
    let records = (0..30)
        .map(|k| {
            let key = (i * 7 + k * 2) % 60;
            let mut r = survey();
            r.response_id = format!("shared-{key}");
            r.morale = Some((i % 5) as i32 + 1);
            r.loyalty = Some((i / 5 % 5) as i32 + 1);
            rec(Kind::SurveyResponse(r))
        })
        .collect();
    pb::SubmitRecordsRequest { validate_only: false, request_id: format!("replica-batch-{i}"), records }
}

/// Two server processes on one PostgreSQL database (starting together, so their
/// migrations race) take 40 batches with overlapping natural keys, every batch sent
/// to both at once under its request id. The result must be what a serial run gives:
/// each batch applied once, both replicas answering it identically, no duplicate row,
/// no lost correction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(pm_test_postgres), ignore = "PM_TEST_POSTGRES_URL is not set")]
async fn two_replicas_ingesting_the_same_batches_end_as_a_serial_run() {
    crate::helpers::require_postgres();
    let db = TestDatabase::new(Backend::Postgres).await;
    let (url_a, url_b) = (db.url.clone(), db.url.clone());
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(move || Server::start_on(&url_a, tempfile::tempdir().unwrap(), &[])),
        tokio::task::spawn_blocking(move || Server::start_on(&url_b, tempfile::tempdir().unwrap(), &[])),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ch_a, ch_b) = (channel(&a.addr).await, channel(&b.addr).await);

    // The registry through replica A; it is visible to B at once.
    let registry = pb::registry_service_client::RegistryServiceClient::new(ch_a.clone());
    for agency in ["nhs-a", "la-b", "vol-c", "priv-d"] {
        registry
            .clone()
            .create_agency(pb::CreateAgencyRequest {
                agency_id: agency.into(),
                agency: Some(pb::Agency { display_name: agency.into(), sector: 1, ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    registry
        .clone()
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "pa".into(),
            partnership: Some(pb::Partnership { display_name: "pa".into(), ..Default::default() }),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let batches: Vec<pb::SubmitRecordsRequest> = (0..40).map(batch).collect();
    let mut tasks = Vec::new();
    for request in &batches {
        for ch in [&ch_a, &ch_b] {
            let mut client = SubmissionServiceClient::new(ch.clone());
            let request = request.clone();
            tasks.push(tokio::spawn(
                async move { client.submit_records(request).await.map(|r| r.into_inner()) },
            ));
        }
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().expect("every submission succeeds on both replicas"));
    }
    // Both replicas answer each batch identically: one applied it, the other replayed.
    for (i, pair) in answers.chunks(2).enumerate() {
        assert_eq!(
            pair[0].replayed as u8 + pair[1].replayed as u8,
            1,
            "batch {i}: exactly one replica applied it"
        );
        let strip = |r: &pb::SubmitRecordsResponse| pb::SubmitRecordsResponse { replayed: false, ..*r };
        assert_eq!(strip(&pair[0]), strip(&pair[1]), "batch {i}: both replicas give the stored response");
        assert_eq!(pair[0].record_count, 30);
    }
    let distinct: BTreeSet<String> = batches
        .iter()
        .flat_map(|b| b.records.iter())
        .map(|r| match &r.kind {
            Some(Kind::SurveyResponse(s)) => s.response_id.clone(),
            _ => unreachable!(),
        })
        .collect();
    let inserted: i64 = answers.chunks(2).map(|p| p[0].inserted_count).sum();
    let replaced: i64 = answers.chunks(2).map(|p| p[0].replaced_count).sum();
    assert_eq!(inserted, distinct.len() as i64, "each key inserted exactly once");
    assert_eq!(inserted + replaced, 40 * 30, "every record of every batch applied once");

    // Serial equivalence. Each key's audit trail names, by request id, the batches
    // that wrote it, in order. A serial run exists exactly when those per-key orders
    // never contradict each other (their union is acyclic); then every key's content
    // is its last writer's version, with one revision per batch that held it.
    let content = |i: usize, id: &str| {
        batches[i]
            .records
            .iter()
            .find(|r| matches!(&r.kind, Some(Kind::SurveyResponse(s)) if s.response_id == id))
            .cloned()
    };
    let mut client = SubmissionServiceClient::new(ch_b.clone());
    let stored = client
        .list_records(pb::ListRecordsRequest { page_size: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(stored.len(), distinct.len(), "no duplicate rows");
    let mut before: BTreeSet<(usize, usize)> = BTreeSet::new();
    for s in &stored {
        let Some(Kind::SurveyResponse(r)) = s.record.as_ref().and_then(|r| r.kind.clone()) else {
            unreachable!()
        };
        let holders: Vec<usize> = (0..40).filter(|&i| content(i, &r.response_id).is_some()).collect();
        let history = client
            .list_record_revisions(pb::ListRecordRevisionsRequest {
                key: s.key.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revisions;
        let numbers: Vec<i64> = history.iter().map(|h| h.revision).collect();
        assert_eq!(
            numbers,
            (1..=holders.len() as i64).collect::<Vec<_>>(),
            "{}: one revision per batch, none lost",
            s.key
        );
        let writers: Vec<usize> = history
            .iter()
            .map(|h| h.request_id.trim_start_matches("replica-batch-").parse().unwrap())
            .collect();
        let mut sorted = writers.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, holders, "{}: each batch holding the key wrote it once", s.key);
        for (h, &w) in history.iter().zip(&writers) {
            assert_eq!(
                h.content,
                content(w, &r.response_id),
                "{}: revision {} is batch {w}'s",
                s.key,
                h.revision
            );
        }
        assert_eq!(
            s.record,
            content(*writers.last().unwrap(), &r.response_id),
            "{}: the last writer wins",
            s.key
        );
        for pair in writers.windows(2) {
            before.insert((pair[0], pair[1]));
        }
    }
    // Kahn's algorithm: the per-key orders admit one serial order of all batches.
    let mut indegree = [0usize; 40];
    for &(_, b) in &before {
        indegree[b] += 1;
    }
    let mut ready: Vec<usize> = (0..40).filter(|&i| indegree[i] == 0).collect();
    let mut placed = 0;
    while let Some(i) = ready.pop() {
        placed += 1;
        for &(a, b) in before.range((i, 0)..=(i, usize::MAX)) {
            debug_assert_eq!(a, i);
            indegree[b] -= 1;
            if indegree[b] == 0 {
                ready.push(b);
            }
        }
    }
    assert_eq!(placed, 40, "the replicas' writes are equivalent to a serial run");
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    drop(db);
}

async fn all_reports(app: &crate::helpers::TestApp, period: &str) -> Vec<pb::PartnershipReport> {
    let mut stream = app
        .reports()
        .export_reports(pb::ExportReportsRequest { period: period.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item.unwrap().report.unwrap());
    }
    out
}

/// One scenario (the worked example and the synthetic demo) loaded into SQLite and
/// into PostgreSQL gives the same reports, bit for bit, for periods of every type.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(not(pm_test_postgres), ignore = "PM_TEST_POSTGRES_URL is not set")]
async fn postgresql_reports_equal_sqlite_reports_bit_for_bit() {
    crate::helpers::require_postgres();
    let grace = std::time::Duration::from_secs(5);
    let (sqlite, postgres) =
        tokio::join!(spawn_app_on(Backend::Sqlite, grace), spawn_app_on(Backend::Postgres, grace));
    let demo = synth::Synth::new(synth::SynthConfig::demo());
    for app in [&sqlite, &postgres] {
        worked::load(app).await;
        let mut stats = load::load_registry(app.api(), &demo).await.unwrap();
        load::load_records(app.api(), demo.clone(), 500, &mut stats).await.unwrap();
    }
    for period in ["2026Q3", "2026Q2", "202609", "2026", "2025April", "2025"] {
        let (a, b) = (all_reports(&sqlite, period).await, all_reports(&postgres, period).await);
        assert_eq!(a.len(), 6, "{period}: every partnership");
        assert!(
            a.iter().any(|r| r.composite.as_ref().unwrap().psi.is_some()),
            "{period}: some index to compare"
        );
        assert_eq!(a, b, "{period}: SQLite and PostgreSQL disagree");
        // Bit for bit: the encodings are equal too (no maps, so encoding is canonical).
        let bytes =
            |v: &[pb::PartnershipReport]| v.iter().map(prost::Message::encode_to_vec).collect::<Vec<_>>();
        assert_eq!(bytes(&a), bytes(&b), "{period}");
    }
}
