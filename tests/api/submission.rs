//! SubmissionService over gRPC: every check, atomic batches, corrections, the audit
//! trail, idempotency and streaming.

use partnership_metrics::pb::{self, ingest_records_response::Result as Ack, record::Kind};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    fixtures::*,
    helpers::{TestApp, assert_error, spawn_app},
};

struct Case {
    name: &'static str,
    records: Vec<pb::Record>,
    code: Code,
    reason: &'static str,
    fields: Vec<String>,
}

const INVALID: (Code, &str) = (Code::InvalidArgument, "INVALID_RECORDS");
const NO_AGENCY: (Code, &str) = (Code::NotFound, "UNKNOWN_AGENCY");
const NO_PARTNERSHIP: (Code, &str) = (Code::NotFound, "UNKNOWN_PARTNERSHIP");
const PRECONDITION: (Code, &str) = (Code::FailedPrecondition, "PRECONDITION_FAILED");

fn one(name: &'static str, record: Kind, (code, reason): (Code, &'static str), field: &str) -> Case {
    Case { name, records: vec![rec(record)], code, reason, fields: vec![format!("records[0].{field}")] }
}

fn w(f: impl FnOnce(&mut pb::WorkforceReturn)) -> Kind {
    let mut r = workforce();
    f(&mut r);
    Kind::WorkforceReturn(r)
}

fn sc(f: impl FnOnce(&mut pb::ServiceContract)) -> Kind {
    let mut r = contract();
    f(&mut r);
    Kind::ServiceContract(r)
}

fn tc(f: impl FnOnce(&mut pb::TeamComposition)) -> Kind {
    let mut r = team();
    f(&mut r);
    Kind::TeamComposition(r)
}

fn sr(f: impl FnOnce(&mut pb::SurveyResponse)) -> Kind {
    let mut r = survey();
    f(&mut r);
    Kind::SurveyResponse(r)
}

fn rr(f: impl FnOnce(&mut pb::RelationshipRating)) -> Kind {
    let mut r = rating();
    f(&mut r);
    Kind::RelationshipRating(r)
}

fn pa(f: impl FnOnce(&mut pb::PrinciplesAdoption)) -> Kind {
    let mut r = adoption();
    f(&mut r);
    Kind::PrinciplesAdoption(r)
}

fn pe(f: impl FnOnce(&mut pb::PrinciplesEndorsement)) -> Kind {
    let mut r = endorsement();
    f(&mut r);
    Kind::PrinciplesEndorsement(r)
}

fn re(f: impl FnOnce(&mut pb::RestructuringEvent)) -> Kind {
    let mut r = event();
    f(&mut r);
    Kind::RestructuringEvent(r)
}

fn bc(f: impl FnOnce(&mut pb::BudgetContribution)) -> Kind {
    let mut r = budget();
    f(&mut r);
    Kind::BudgetContribution(r)
}

/// At least one bad input per check of methodology 2.2-2.4, plus the edge cases of
/// periods, dates and exact sums.
fn cases() -> Vec<Case> {
    const MAX: i64 = i64::MAX;
    let mut cases = vec![
        // Periods: only the four DHIS2 forms, years 1900-9999.
        one("quarter 0", w(|r| r.period = "2026Q0".into()), INVALID, "workforce_return.period"),
        one("quarter 5", w(|r| r.period = "2026Q5".into()), INVALID, "workforce_return.period"),
        one("month 13", w(|r| r.period = "202613".into()), INVALID, "workforce_return.period"),
        one("month 00", w(|r| r.period = "202600".into()), INVALID, "workforce_return.period"),
        one("ISO month", w(|r| r.period = "2026-09".into()), INVALID, "workforce_return.period"),
        one("lower-case q", w(|r| r.period = "2026q3".into()), INVALID, "workforce_return.period"),
        one("APRIL", bc(|r| r.period = "2026APRIL".into()), INVALID, "budget_contribution.period"),
        one("9999April", bc(|r| r.period = "9999April".into()), INVALID, "budget_contribution.period"),
        one("year 1899", tc(|r| r.period = "1899".into()), INVALID, "team_composition.period"),
        one("year 10000", sr(|r| r.period = "10000".into()), INVALID, "survey_response.period"),
        one("leading space", rr(|r| r.period = " 2026".into()), INVALID, "relationship_rating.period"),
        one("empty period", w(|r| r.period = String::new()), INVALID, "workforce_return.period"),
        // Dates.
        one("Feb 30", sc(|r| r.start_date = "2026-02-30".into()), INVALID, "service_contract.start_date"),
        one(
            "Feb 29 non-leap",
            pa(|r| r.adoption_date = "2025-02-29".into()),
            INVALID,
            "principles_adoption.adoption_date",
        ),
        one("empty date", sc(|r| r.end_date = String::new()), INVALID, "service_contract.end_date"),
        one(
            "date 1899",
            pe(|r| r.endorsement_date = "1899-12-31".into()),
            INVALID,
            "principles_endorsement.endorsement_date",
        ),
        one("month 13 date", re(|r| r.date = "2026-13-01".into()), INVALID, "restructuring_event.date"),
        one("slashed date", re(|r| r.date = "2026/01/01".into()), INVALID, "restructuring_event.date"),
        // Ids and references.
        one(
            "empty partnership",
            w(|r| r.partnership = String::new()),
            INVALID,
            "workforce_return.partnership",
        ),
        one("upper-case agency", w(|r| r.agency = "NHS-A".into()), INVALID, "workforce_return.agency"),
        one(
            "64-char contract id",
            sc(|r| r.contract_id = "c".repeat(64)),
            INVALID,
            "service_contract.contract_id",
        ),
        one("bad team id", tc(|r| r.team_id = "team_1".into()), INVALID, "team_composition.team_id"),
        one(
            "empty response id",
            sr(|r| r.response_id = String::new()),
            INVALID,
            "survey_response.response_id",
        ),
        one("bad event id", re(|r| r.event_id = "ev 1".into()), INVALID, "restructuring_event.event_id"),
        one(
            "unknown partnership",
            w(|r| r.partnership = "ghost".into()),
            NO_PARTNERSHIP,
            "workforce_return.partnership",
        ),
        one("unknown agency", w(|r| r.agency = "ghost".into()), NO_AGENCY, "workforce_return.agency"),
        one(
            "unknown commissioner",
            sc(|r| r.commissioner = "ghost".into()),
            NO_AGENCY,
            "service_contract.commissioner",
        ),
        one("unknown provider", sc(|r| r.provider = "ghost".into()), NO_AGENCY, "service_contract.provider"),
        one(
            "unknown team reporter",
            tc(|r| r.reporting_agency = "ghost".into()),
            NO_AGENCY,
            "team_composition.reporting_agency",
        ),
        one(
            "unknown employer",
            tc(|r| r.entries[0].employer = "ghost".into()),
            NO_AGENCY,
            "team_composition.entries[0].employer",
        ),
        one(
            "unknown respondent",
            sr(|r| r.respondent_agency = "ghost".into()),
            NO_AGENCY,
            "survey_response.respondent_agency",
        ),
        one("unknown ratee", rr(|r| r.ratee = "ghost".into()), NO_AGENCY, "relationship_rating.ratee"),
        one("unknown rater", rr(|r| r.rater = "ghost".into()), NO_AGENCY, "relationship_rating.rater"),
        one(
            "unknown adopter",
            pa(|r| r.reporting_agency = "ghost".into()),
            NO_AGENCY,
            "principles_adoption.reporting_agency",
        ),
        one(
            "unknown endorser",
            pe(|r| r.agency = "ghost".into()),
            NO_AGENCY,
            "principles_endorsement.agency",
        ),
        one(
            "unknown event agency",
            re(|r| r.agency = "ghost".into()),
            NO_AGENCY,
            "restructuring_event.agency",
        ),
        one(
            "unknown budget partnership",
            bc(|r| r.partnership = "ghost".into()),
            NO_PARTNERSHIP,
            "budget_contribution.partnership",
        ),
        // Counts and amounts are >= 0.
        one(
            "negative headcount_start",
            w(|r| r.headcount_start = -1),
            INVALID,
            "workforce_return.headcount_start",
        ),
        one("negative joiners", w(|r| r.joiners = -1), INVALID, "workforce_return.joiners"),
        one("negative leavers", w(|r| r.leavers = -5), INVALID, "workforce_return.leavers"),
        one(
            "negative agency_staff",
            w(|r| {
                r.agency_staff = -5;
                r.permanent = 100
            }),
            INVALID,
            "workforce_return.agency_staff",
        ),
        one(
            "negative value",
            sc(|r| r.annual_value_pence = -1),
            INVALID,
            "service_contract.annual_value_pence",
        ),
        one(
            "negative staff affected",
            re(|r| r.staff_affected = -1),
            INVALID,
            "restructuring_event.staff_affected",
        ),
        one("negative pooled", bc(|r| r.pooled_pence = -1), INVALID, "budget_contribution.pooled_pence"),
        one(
            "negative aligned",
            bc(|r| r.aligned_pence = MAX.wrapping_add(1)),
            INVALID,
            "budget_contribution.aligned_pence",
        ),
        one(
            "negative optional",
            w(|r| r.staff_over_one_year_service = Some(-1)),
            INVALID,
            "workforce_return.staff_over_one_year_service",
        ),
        // Workforce return cross-field checks, with exact sums.
        one("split != headcount_end", w(|r| r.permanent = 91), INVALID, "workforce_return.headcount_end"),
        one(
            "i64 overflow sum wraps to headcount_end",
            w(|r| {
                r.permanent = MAX;
                r.fixed_term = MAX;
                r.agency_staff = 2;
                r.headcount_end = 0
            }),
            INVALID,
            "workforce_return.headcount_end",
        ),
        one("leavers > start + joiners", w(|r| r.leavers = 116), INVALID, "workforce_return.leavers"),
        one(
            "leavers > start + joiners near i64::MAX",
            w(|r| {
                r.headcount_start = 0;
                r.joiners = MAX - 1;
                r.leavers = MAX
            }),
            INVALID,
            "workforce_return.leavers",
        ),
        one(
            "stability without its pair",
            w(|r| r.headcount_one_year_ago = None),
            INVALID,
            "workforce_return.headcount_one_year_ago",
        ),
        one(
            "pair without stability",
            w(|r| r.staff_over_one_year_service = None),
            INVALID,
            "workforce_return.staff_over_one_year_service",
        ),
        one(
            "stable staff > year-ago headcount",
            w(|r| r.staff_over_one_year_service = Some(101)),
            INVALID,
            "workforce_return.staff_over_one_year_service",
        ),
        // Contracts.
        one(
            "empty service name",
            sc(|r| r.service_name = String::new()),
            INVALID,
            "service_contract.service_name",
        ),
        one(
            "NUL in a service name",
            sc(|r| r.service_name = "Home\0care".into()),
            INVALID,
            "service_contract.service_name",
        ),
        one("unspecified delivery", sc(|r| r.delivery = 0), INVALID, "service_contract.delivery"),
        one("unknown delivery number", sc(|r| r.delivery = 9), INVALID, "service_contract.delivery"),
        one(
            "end before start",
            sc(|r| r.end_date = "2025-12-31".into()),
            INVALID,
            "service_contract.end_date",
        ),
        one(
            "in-house by another",
            sc(|r| r.delivery = pb::Delivery::InHouse as i32),
            INVALID,
            "service_contract.provider",
        ),
        one(
            "outsourced to itself",
            sc(|r| r.provider = "nhs-a".into()),
            INVALID,
            "service_contract.provider",
        ),
        // Teams.
        one("no entries", tc(|r| r.entries.clear()), INVALID, "team_composition.entries"),
        one(
            "zero headcount",
            tc(|r| r.entries[1].headcount = 0),
            INVALID,
            "team_composition.entries[1].headcount",
        ),
        one(
            "unspecified employment",
            tc(|r| r.entries[2].employment = 0),
            INVALID,
            "team_composition.entries[2].employment",
        ),
        one(
            "repeated employer and employment",
            tc(|r| r.entries[2] = r.entries[0].clone()),
            INVALID,
            "team_composition.entries[2]",
        ),
        one(
            "headcounts beyond 2^63 - 1",
            tc(|r| {
                r.entries[0].headcount = MAX;
                r.entries[1].headcount = 1
            }),
            INVALID,
            "team_composition.entries",
        ),
        // Surveys.
        one(
            "no survey item",
            sr(|r| {
                r.shared_vision = None;
                r.shared_values = None;
                r.morale = None;
                r.loyalty = None;
                r.motivation = None
            }),
            INVALID,
            "survey_response",
        ),
        one("item 0", sr(|r| r.shared_vision = Some(0)), INVALID, "survey_response.shared_vision"),
        one("item 6", sr(|r| r.morale = Some(6)), INVALID, "survey_response.morale"),
        // Ratings.
        one("rating 0", rr(|r| r.reliability = 0), INVALID, "relationship_rating.reliability"),
        one("rating 5", rr(|r| r.openness = 5), INVALID, "relationship_rating.openness"),
        one(
            "rating negative",
            rr(|r| r.resource_contribution = -1),
            INVALID,
            "relationship_rating.resource_contribution",
        ),
        one("rater rates itself", rr(|r| r.ratee = "nhs-a".into()), INVALID, "relationship_rating.ratee"),
        // Principles.
        one("version 0", pa(|r| r.version = 0), INVALID, "principles_adoption.version"),
        one("negative version", pe(|r| r.version = -1), INVALID, "principles_endorsement.version"),
        one("empty title", pa(|r| r.title = String::new()), INVALID, "principles_adoption.title"),
        one(
            "escape code in a title",
            pa(|r| r.title = "\u{1b}[2J".into()),
            INVALID,
            "principles_adoption.title",
        ),
        one(
            "adopted by a non-lead",
            pa(|r| r.reporting_agency = "la-b".into()),
            PRECONDITION,
            "principles_adoption.reporting_agency",
        ),
        one(
            "adopted before the lead joined",
            pa(|r| r.adoption_date = "2019-12-31".into()),
            PRECONDITION,
            "principles_adoption.reporting_agency",
        ),
        one(
            "adopted by a non-member",
            pa(|r| r.reporting_agency = "priv-d".into()),
            PRECONDITION,
            "principles_adoption.reporting_agency",
        ),
        one(
            "endorsing an unadopted version",
            pe(|r| r.version = 9),
            PRECONDITION,
            "principles_endorsement.version",
        ),
        // Restructuring events.
        one("unspecified event kind", re(|r| r.kind = 0), INVALID, "restructuring_event.kind"),
        one("unknown event kind", re(|r| r.kind = 42), INVALID, "restructuring_event.kind"),
    ];
    // Whole batches.
    cases.push(Case {
        name: "record without a kind",
        records: vec![pb::Record { kind: None }],
        code: Code::InvalidArgument,
        reason: "INVALID_RECORDS",
        fields: vec!["records[0]".into()],
    });
    cases.push(Case {
        name: "empty batch",
        records: vec![],
        code: Code::InvalidArgument,
        reason: "INVALID_RECORDS",
        fields: vec!["records".into()],
    });
    cases.push(Case {
        name: "10,001 records",
        records: vec![rec(Kind::BudgetContribution(budget())); 10_001],
        code: Code::InvalidArgument,
        reason: "INVALID_RECORDS",
        fields: vec!["records".into()],
    });
    cases
}

async fn setup() -> TestApp {
    let app = spawn_app().await;
    registry(&app).await;
    app
}

backend_test! {
async fn every_check_rejects_with_its_code_and_path_and_stores_nothing() {
    let app = setup().await;
    // A stored adoption and endorsement for the precondition cases.
    let mut client = app.submission();
    client
        .submit_records(submit_request(
            "",
            vec![rec(Kind::PrinciplesAdoption(adoption())), rec(Kind::PrinciplesEndorsement(endorsement()))],
        ))
        .await
        .unwrap();
    let before = app.snapshot().await;
    let mut extra = vec![
        // A correction moving the adoption after a stored endorsement.
        one(
            "adoption after an endorsement",
            pa(|r| r.adoption_date = "2025-03-01".into()),
            PRECONDITION,
            "principles_adoption.adoption_date",
        ),
        one(
            "endorsement before its adoption",
            pe(|r| {
                r.agency = "vol-c".into();
                r.endorsement_date = "2025-01-09".into()
            }),
            PRECONDITION,
            "principles_endorsement.endorsement_date",
        ),
    ];
    let mut all = cases();
    all.append(&mut extra);
    let total = all.len();
    for case in all {
        let err = client.submit_records(submit_request("", case.records)).await.expect_err(case.name);
        let fields: Vec<&str> = case.fields.iter().map(String::as_str).collect();
        assert_error(&err, case.code, case.reason, &fields);
        assert_eq!(
            err.get_error_details().error_info().unwrap().metadata["omitted_violations"],
            "0",
            "{}",
            case.name
        );
    }
    assert_eq!(app.snapshot().await, before, "a rejected batch changed the database");
    assert!(total >= 80, "the table covers every check");
}
}

backend_test! {
async fn a_bad_request_id_is_rejected() {
    let app = setup().await;
    let err =
        app.submission().submit_records(submit_request("no spaces allowed", all_nine())).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_RECORDS", &["request_id"]);
}
}

backend_test! {
async fn large_exact_values_are_accepted() {
    let app = setup().await;
    const MAX: i64 = i64::MAX;
    let big = w(|r| {
        // Sums past i64::MAX that hold exactly: no false overflow.
        r.headcount_start = MAX;
        r.joiners = MAX;
        r.leavers = MAX;
        r.headcount_end = MAX;
        r.permanent = MAX - 2;
        r.fixed_term = 1;
        r.agency_staff = 1;
        r.staff_over_one_year_service = Some(MAX);
        r.headcount_one_year_ago = Some(MAX);
    });
    let team = tc(|r| {
        r.entries.truncate(2);
        r.entries[0].headcount = MAX - 1;
        r.entries[1].headcount = 1;
    });
    let response = app
        .submission()
        .submit_records(submit_request("", vec![rec(big), rec(team)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.inserted_count, 2);
}
}

backend_test! {
async fn violations_mix_statuses_order_by_record_then_path_and_are_capped() {
    let app = setup().await;
    let mut client = app.submission();
    let before = app.snapshot().await;

    // Invalid beats not-found beats precondition; all are listed.
    let mixed = vec![
        rec(pa(|r| r.reporting_agency = "la-b".into())),
        rec(w(|r| r.agency = "ghost".into())),
        rec(w(|r| {
            r.period = "2026Q9".into();
            r.agency = "NHS".into();
        })),
    ];
    let err = client.submit_records(submit_request("", mixed)).await.unwrap_err();
    assert_error(
        &err,
        Code::InvalidArgument,
        "INVALID_RECORDS",
        &[
            "records[0].principles_adoption.reporting_agency",
            "records[1].workforce_return.agency",
            "records[2].workforce_return.agency",
            "records[2].workforce_return.period",
        ],
    );
    let not_found =
        vec![rec(w(|r| r.agency = "ghost".into())), rec(pa(|r| r.reporting_agency = "la-b".into()))];
    let err = client.submit_records(submit_request("", not_found)).await.unwrap_err();
    assert_error(
        &err,
        Code::NotFound,
        "UNKNOWN_AGENCY",
        &["records[0].workforce_return.agency", "records[1].principles_adoption.reporting_agency"],
    );
    let both = vec![rec(w(|r| r.agency = "ghost".into())), rec(bc(|r| r.partnership = "ghost".into()))];
    let err = client.submit_records(submit_request("", both)).await.unwrap_err();
    assert_error(
        &err,
        Code::NotFound,
        "UNKNOWN_PARTNERSHIP",
        &["records[0].workforce_return.agency", "records[1].budget_contribution.partnership"],
    );

    // 150 bad records: at most 100 listed (fewer if that many do not fit the status
    // headers' 7 KiB), in order, the rest counted.
    let many: Vec<_> = (0..150).map(|_| rec(bc(|r| r.pooled_pence = -1))).collect();
    let err = client.submit_records(submit_request("", many)).await.unwrap_err();
    let details = err.get_error_details();
    let listed = &details.bad_request().unwrap().field_violations;
    assert!(listed.len() <= 100 && listed.len() >= 90, "{} listed", listed.len());
    for (i, v) in listed.iter().enumerate() {
        assert_eq!(v.field, format!("records[{i}].budget_contribution.pooled_pence"));
    }
    let omitted: usize = details.error_info().unwrap().metadata["omitted_violations"].parse().unwrap();
    assert_eq!(listed.len() + omitted, 150);
    assert_eq!(app.snapshot().await, before);
}
}

backend_test! {
async fn all_nine_kinds_are_stored_and_read_back() {
    let app = setup().await;
    let mut client = app.submission();
    let records = all_nine();
    let response = client.submit_records(submit_request("", records.clone())).await.unwrap().into_inner();
    assert_eq!((response.record_count, response.inserted_count, response.replaced_count), (9, 9, 0));
    assert!(response.commit_time.is_some());

    let listed = client.list_records(pb::ListRecordsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.records.len(), 9);
    let mut keys: Vec<&str> = listed.records.iter().map(|r| r.key.as_str()).collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted, "records are listed in key order");
    keys.sort_by_key(|k| k.to_string());
    // What comes back is exactly what went in, kind by kind.
    for original in &records {
        assert!(
            listed.records.iter().any(|s| s.record.as_ref() == Some(original) && s.revision == 1),
            "{original:?} not read back"
        );
    }
    assert!(listed.records.iter().any(|r| r.key == "workforce_return/pa/nhs-a/2026Q3"));
    assert!(listed.records.iter().any(|r| r.key == "restructuring_event/nhs-a/ev-1"));
}
}

backend_test! {
async fn one_bad_record_among_many_stores_nothing() {
    let app = setup().await;
    let before = app.snapshot().await;
    let mut records: Vec<pb::Record> =
        (0..2000).map(|i| rec(sr(|r| r.response_id = format!("resp-{i}")))).collect();
    records[1234] = rec(sr(|r| r.loyalty = Some(9)));
    let err = app.submission().submit_records(submit_request("", records)).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_RECORDS", &["records[1234].survey_response.loyalty"]);
    assert_eq!(app.snapshot().await, before);
}
}

backend_test! {
async fn a_retry_returns_the_stored_response_and_changes_nothing() {
    let app = setup().await;
    let mut client = app.submission();
    let request = submit_request("batch-2026-09-30-001", all_nine());
    let first = client.submit_records(request.clone()).await.unwrap().into_inner();
    let after = app.snapshot().await;
    assert!(!first.replayed);
    let retry = client.submit_records(request.clone()).await.unwrap().into_inner();
    assert!(retry.replayed, "a retry says it is a replay");
    assert_eq!(
        pb::SubmitRecordsResponse { replayed: false, ..retry },
        first,
        "otherwise the identical response, commit time included"
    );
    assert_eq!(app.snapshot().await, after, "no duplicate rows, audit trail unchanged");

    let mut changed = request.clone();
    changed.records.pop();
    let err = client.submit_records(changed).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED", &["request_id"]);
    assert_eq!(app.snapshot().await, after);

    // The same batch retried through the stream is the same request.
    let stream = tokio_stream::iter([pb::IngestRecordsRequest {
        validate_only: false,
        request_id: request.request_id.clone(),
        records: request.records.clone(),
    }]);
    let acks: Vec<_> = client.ingest_records(stream).await.unwrap().into_inner().collect().await;
    let Some(Ack::Accepted(replayed)) = acks[0].as_ref().unwrap().result.clone() else { panic!("{acks:?}") };
    assert!(replayed.replayed);
    assert_eq!(pb::SubmitRecordsResponse { replayed: false, ..replayed }, first);
    assert_eq!(app.snapshot().await, after);
}
}

backend_test! {
async fn corrections_replace_the_record_and_the_history_keeps_both() {
    let app = setup().await;
    let mut client = app.submission();
    client.submit_records(submit_request("first", vec![rec(w(|r| r.leavers = 50))])).await.unwrap();
    let corrected = client
        .submit_records(submit_request("second", vec![rec(Kind::WorkforceReturn(workforce()))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((corrected.inserted_count, corrected.replaced_count), (0, 1));
    // An identical resubmission counts as replaced too.
    let same = client
        .submit_records(submit_request("", vec![rec(Kind::WorkforceReturn(workforce()))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((same.inserted_count, same.replaced_count), (0, 1));

    let key = "workforce_return/pa/nhs-a/2026Q3";
    let current = client
        .list_records(pb::ListRecordsRequest {
            kind: pb::RecordKind::WorkforceReturn as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.records.len(), 1);
    assert_eq!(current.records[0].revision, 3);
    assert_eq!(current.records[0].record, Some(rec(Kind::WorkforceReturn(workforce()))));

    let history = client
        .list_record_revisions(pb::ListRecordRevisionsRequest {
            key: key.into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.revisions.len(), 2);
    let [r1, r2] = [&history.revisions[0], &history.revisions[1]];
    assert_eq!((r1.revision, r1.request_id.as_str(), r1.previous_content.is_none()), (1, "first", true));
    assert_eq!(r1.content, Some(rec(w(|r| r.leavers = 50))));
    assert_eq!(r2.previous_content, r1.content);
    assert_eq!(r2.content, Some(rec(Kind::WorkforceReturn(workforce()))));
    assert_eq!((r2.submitting_agency.as_str(), r2.request_id.as_str()), ("nhs-a", "second"));
    let rest = client
        .list_record_revisions(pb::ListRecordRevisionsRequest {
            key: key.into(),
            page_size: 2,
            page_token: history.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.revisions.len(), 1);
    assert_eq!(rest.revisions[0].previous_content, r2.content, "the previous content crosses pages");
    assert!(rest.next_page_token.is_empty());

    let err = client
        .list_record_revisions(pb::ListRecordRevisionsRequest {
            key: "workforce_return/pa/nhs-a/2026Q4".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "UNKNOWN_RECORD", &[]);
    let err = client
        .list_record_revisions(pb::ListRecordRevisionsRequest {
            key: "workforce_return/pa".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["key"]);
}
}

backend_test! {
async fn within_a_batch_the_last_record_of_a_key_wins_and_endorsements_may_follow_adoptions() {
    let app = setup().await;
    let mut client = app.submission();
    let batch = vec![
        rec(Kind::PrinciplesAdoption(adoption())),
        rec(pe(|r| r.endorsement_date = "2025-01-10".into())),
        rec(bc(|r| r.pooled_pence = 1)),
        rec(bc(|r| r.pooled_pence = 2)),
    ];
    let response = client.submit_records(submit_request("", batch)).await.unwrap().into_inner();
    assert_eq!((response.inserted_count, response.replaced_count), (3, 1));
    let budget = client
        .list_records(pb::ListRecordsRequest {
            kind: pb::RecordKind::BudgetContribution as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.records[0].record, Some(rec(bc(|r| r.pooled_pence = 2))));
    assert_eq!(budget.records[0].revision, 2);

    // An endorsement before its adoption in the same batch fails: order matters.
    let before = app.snapshot().await;
    let batch = vec![
        rec(pe(|r| {
            r.version = 2;
            r.endorsement_date = "2026-02-01".into()
        })),
        rec(pa(|r| {
            r.version = 2;
            r.adoption_date = "2026-01-01".into()
        })),
    ];
    let err = client.submit_records(submit_request("", batch)).await.unwrap_err();
    assert_error(
        &err,
        Code::FailedPrecondition,
        "PRECONDITION_FAILED",
        &["records[0].principles_endorsement.version"],
    );
    // A batch endorsement earlier than a later adoption in the same batch is caught.
    let batch = vec![
        rec(pa(|r| {
            r.version = 2;
            r.adoption_date = "2026-01-01".into()
        })),
        rec(pe(|r| {
            r.version = 2;
            r.endorsement_date = "2026-02-01".into()
        })),
        rec(pa(|r| {
            r.version = 2;
            r.adoption_date = "2026-03-01".into()
        })),
    ];
    let err = client.submit_records(submit_request("", batch)).await.unwrap_err();
    assert_error(
        &err,
        Code::FailedPrecondition,
        "PRECONDITION_FAILED",
        &["records[2].principles_adoption.adoption_date"],
    );
    assert_eq!(app.snapshot().await, before);
}
}

backend_test! {
async fn list_records_filters_and_pages() {
    let app = setup().await;
    let mut client = app.submission();
    let mut records = all_nine();
    records.push(rec(w(|r| r.period = "2026Q2".into())));
    records.push(rec(w(|r| {
        r.agency = "la-b".into();
        r.permanent = 100;
        r.fixed_term = 5;
    })));
    client.submit_records(submit_request("", records)).await.unwrap();
    let lister = client.clone();
    let list = |req: pb::ListRecordsRequest| {
        let mut client = lister.clone();
        async move {
            client
                .list_records(req)
                .await
                .map(|r| r.into_inner().records.into_iter().map(|s| s.key).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        list(pb::ListRecordsRequest { kind: pb::RecordKind::WorkforceReturn as i32, ..Default::default() })
            .await
            .unwrap(),
        [
            "workforce_return/pa/la-b/2026Q3",
            "workforce_return/pa/nhs-a/2026Q2",
            "workforce_return/pa/nhs-a/2026Q3"
        ]
    );
    assert_eq!(
        list(pb::ListRecordsRequest { agency: "la-b".into(), ..Default::default() }).await.unwrap(),
        ["principles_endorsement/pa/1/la-b", "workforce_return/pa/la-b/2026Q3"]
    );
    // Q3 only: records inside it, and contracts overlapping it.
    let q3 = list(pb::ListRecordsRequest {
        start_period: "2026Q3".into(),
        end_period: "2026Q3".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(q3.contains(&"service_contract/pa/c1".to_string()));
    assert!(!q3.iter().any(|k| k.ends_with("2026Q2")));
    assert!(!q3.iter().any(|k| k.starts_with("principles_adoption")), "dated 2025-01-10");
    let with_events =
        list(pb::ListRecordsRequest { start_period: "2025".into(), ..Default::default() }).await.unwrap();
    assert!(with_events.contains(&"restructuring_event/nhs-a/ev-1".to_string()));
    let in_pa =
        list(pb::ListRecordsRequest { partnership: "pa".into(), ..Default::default() }).await.unwrap();
    assert_eq!(in_pa.len(), 10, "restructuring events belong to no partnership");

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_records(pb::ListRecordsRequest { page_size: 4, page_token: token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.records.into_iter().map(|r| r.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 11);

    let err = list(pb::ListRecordsRequest {
        start_period: "2026Q3".into(),
        end_period: "2026Q2".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["end_period"]);
    let err = list(pb::ListRecordsRequest { kind: 99, agency: "Bad".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["agency", "kind"]);
}
}

backend_test! {
async fn a_stream_acknowledges_each_batch_in_order_and_survives_a_bad_one() {
    let app = setup().await;
    let before = app.snapshot().await;
    let batches: Vec<pb::IngestRecordsRequest> = (0..20)
        .map(|b| {
            let records = (0..50)
                .map(|i| {
                    if b == 7 && i == 31 {
                        rec(sr(|r| r.period = "2026Q5".into()))
                    } else {
                        rec(sr(|r| r.response_id = format!("b{b}-r{i}")))
                    }
                })
                .collect();
            pb::IngestRecordsRequest { validate_only: false, request_id: format!("stream-{b}"), records }
        })
        .collect();
    let mut client = app.submission();
    let mut acks = client.ingest_records(tokio_stream::iter(batches)).await.unwrap().into_inner();
    let mut index = 0;
    while let Some(ack) = acks.next().await {
        let ack = ack.unwrap();
        assert_eq!(ack.batch_index, index, "acknowledgements come in order");
        assert_eq!(ack.request_id, format!("stream-{index}"));
        match ack.result.unwrap() {
            Ack::Accepted(ok) => {
                assert_ne!(index, 7);
                assert_eq!(ok.inserted_count, 50);
            }
            Ack::Rejected(status) => {
                assert_eq!(index, 7, "only batch 7 is bad");
                assert_eq!(status.code, Code::InvalidArgument as i32);
                let status = tonic::Status::with_details(Code::InvalidArgument, status.message.clone(), {
                    use prost::Message;
                    status.encode_to_vec().into()
                });
                assert_error(
                    &status,
                    Code::InvalidArgument,
                    "INVALID_RECORDS",
                    &["records[31].survey_response.period"],
                );
            }
        }
        index += 1;
    }
    assert_eq!(index, 20);
    let stored = client
        .list_records(pb::ListRecordsRequest { page_size: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(stored.len(), 19 * 50, "the good batches are stored, the bad one not");
    assert!(!stored.iter().any(|r| r.key.contains("/b7-")));
    assert_ne!(app.snapshot().await, before);
}
}

backend_test! {
async fn shutdown_ends_an_open_stream_after_its_batch_and_says_where_to_resume() {
    let mut app = crate::helpers::spawn_app_with_grace(std::time::Duration::from_secs(30)).await;
    registry(&app).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut acks = app
        .submission()
        .ingest_records(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(pb::IngestRecordsRequest { validate_only: false, request_id: "s-0".into(), records: all_nine() }).await.unwrap();
    let first = acks.next().await.unwrap().unwrap();
    assert!(matches!(first.result, Some(Ack::Accepted(_))));

    // The client keeps its stream open; shutdown must not wait out the grace period.
    let stopping = tokio::spawn(async move { app.shutdown().await });
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), acks.next())
        .await
        .expect("the stream ends during shutdown")
        .expect("an error ends the stream");
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("before index 1"), "{}", status.message());
    tokio::time::timeout(std::time::Duration::from_secs(20), stopping)
        .await
        .expect("the server stops before the grace period runs out")
        .unwrap()
        .unwrap();
    drop(tx);
}
}

backend_test! {
async fn eight_concurrent_writers_into_one_partnership_all_succeed() {
    // On PostgreSQL each batch's inserts take a key-share lock on the partnership row
    // (its foreign key) before the batch bumps the partnership's data version: two
    // writers used to deadlock there, and 36 of these 40 batches failed.
    let app = setup().await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let mut client = app.submission();
        tasks.push(tokio::spawn(async move {
            for b in 0..5 {
                let records: Vec<_> = (0..50)
                    .map(|k| {
                        let mut s = survey();
                        s.response_id = format!("w{writer}-b{b}-k{k}");
                        rec(Kind::SurveyResponse(s))
                    })
                    .collect();
                client.submit_records(submit_request(&format!("w{writer}-{b}"), records)).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("no batch fails");
    }
    let mut count = 0;
    let mut token = String::new();
    loop {
        let page = app
            .submission()
            .list_records(pb::ListRecordsRequest {
                partnership: "pa".into(),
                kind: pb::RecordKind::SurveyResponse as i32,
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        count += page.records.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(count, 8 * 5 * 50);
}
}

backend_test! {
async fn concurrent_batches_of_the_same_new_keys_number_every_revision_once() {
    // On PostgreSQL each batch locks the keys it finds stored and inserts the others:
    // a key another batch inserts in between fails the insert, and the batch is
    // retried whole, finding the key stored. Every write must still be one revision,
    // each key inserted by exactly one batch.
    let app = setup().await;
    let writers = 8;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let mut client = app.submission();
        tasks.push(tokio::spawn(async move {
            let records: Vec<_> = (0..40)
                .map(|k| {
                    rec(sr(|r| {
                        r.response_id = format!("same-{k}");
                        r.morale = Some(1 + writer % 5);
                    }))
                })
                .collect();
            let done = client.submit_records(submit_request(&format!("writer-{writer}"), records)).await?;
            Ok::<_, tonic::Status>(done.into_inner())
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        let done = t.await.unwrap().expect("no batch fails");
        assert_eq!(done.inserted_count + done.replaced_count, 40);
        inserted += done.inserted_count;
    }
    assert_eq!(inserted, 40, "each key is inserted by one batch, replaced by the others");
    let mut client = app.submission();
    let stored = client
        .list_records(pb::ListRecordsRequest {
            kind: pb::RecordKind::SurveyResponse as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(stored.len(), 40);
    for record in &stored {
        assert_eq!(record.revision, i64::from(writers), "{}", record.key);
        let history = client
            .list_record_revisions(pb::ListRecordRevisionsRequest {
                key: record.key.clone(),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .revisions;
        let numbers: Vec<i64> = history.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, (1..=i64::from(writers)).collect::<Vec<_>>(), "{}", record.key);
        let mut requests: Vec<&str> = history.iter().map(|r| r.request_id.as_str()).collect();
        requests.sort_unstable();
        assert_eq!(requests, (0..writers).map(|w| format!("writer-{w}")).collect::<Vec<_>>(), "{}", record.key);
        assert_eq!(history.last().and_then(|r| r.content.clone()), record.record, "{}", record.key);
    }
}
}

backend_test! {
/// AIP-163: a validate_only batch runs every check, answers with the counts the write
/// would give, stores nothing and leaves its request id free for the real write.
async fn validate_only_answers_as_the_write_would_and_stores_nothing() {
    let app = setup().await;
    let mut client = app.submission();
    client.submit_records(submit_request("stored-1", all_nine())).await.unwrap();
    let before = app.snapshot().await;

    // Every rejection is the one the write gives, and nothing is stored.
    for case in cases() {
        let mut request = submit_request("", case.records);
        request.validate_only = true;
        let err = client.submit_records(request).await.expect_err(case.name);
        let fields: Vec<&str> = case.fields.iter().map(String::as_str).collect();
        assert_error(&err, case.code, case.reason, &fields);
    }
    assert_eq!(app.snapshot().await, before, "a rejected validate_only batch changed the database");

    // Two corrections of stored records and three new ones.
    let mut records = vec![rec(w(|r| r.leavers = 3)), rec(Kind::BudgetContribution(budget()))];
    records.extend((0..3).map(|i| rec(sr(|r| r.response_id = format!("new-{i}")))));
    let mut request = submit_request("checked-then-written", records);
    request.validate_only = true;
    let checked = client.submit_records(request.clone()).await.unwrap().into_inner();
    assert_eq!((checked.record_count, checked.inserted_count, checked.replaced_count), (5, 3, 2));
    assert!(checked.commit_time.is_none(), "nothing was committed");
    assert!(!checked.replayed);
    assert_eq!(app.snapshot().await, before, "validate_only stored something");
    // Checked twice: still nothing stored, the same answer.
    assert_eq!(client.submit_records(request.clone()).await.unwrap().into_inner(), checked);

    // The request id was not consumed: the real write under it applies the batch.
    request.validate_only = false;
    let written = client.submit_records(request.clone()).await.unwrap().into_inner();
    assert!(!written.replayed, "the validate_only call did not consume the request id");
    assert!(written.commit_time.is_some());
    assert_eq!(
        (written.record_count, written.inserted_count, written.replaced_count),
        (checked.record_count, checked.inserted_count, checked.replaced_count),
        "validate_only gave the write's counts"
    );
    let after = app.snapshot().await;
    assert_ne!(after, before);

    // validate_only under a committed request id answers with the stored response.
    request.validate_only = true;
    let replay = client.submit_records(request).await.unwrap().into_inner();
    assert!(replay.replayed);
    assert_eq!(pb::SubmitRecordsResponse { replayed: false, ..replay }, written);
    assert_eq!(app.snapshot().await, after);
}
}

backend_test! {
/// validate_only per batch of a stream: a checked batch is answered and not stored,
/// the next batch under the same request id is written.
async fn validate_only_batches_of_a_stream_are_checked_not_stored() {
    let app = setup().await;
    let before = app.snapshot().await;
    let records: Vec<pb::Record> = (0..40).map(|i| rec(sr(|r| r.response_id = format!("s-{i}")))).collect();
    let batch = |validate_only: bool, records: Vec<pb::Record>| pb::IngestRecordsRequest {
        validate_only,
        request_id: "stream-checked".into(),
        records,
    };
    let bad = vec![rec(sr(|r| r.period = "2026Q5".into()))];
    let mut client = app.submission();
    let acks: Vec<pb::IngestRecordsResponse> = client
        .ingest_records(tokio_stream::iter([
            batch(true, bad),
            batch(true, records.clone()),
            batch(false, records.clone()),
        ]))
        .await
        .unwrap()
        .into_inner()
        .map(|a| a.unwrap())
        .collect()
        .await;
    assert_eq!(acks.len(), 3);
    let Some(Ack::Rejected(status)) = &acks[0].result else { panic!("{acks:?}") };
    assert_eq!(status.code, Code::InvalidArgument as i32);
    let Some(Ack::Accepted(checked)) = &acks[1].result else { panic!("{acks:?}") };
    assert_eq!((checked.inserted_count, checked.replaced_count), (40, 0));
    assert!(checked.commit_time.is_none());
    let Some(Ack::Accepted(written)) = &acks[2].result else { panic!("{acks:?}") };
    assert!(!written.replayed && written.commit_time.is_some());
    assert_eq!(written.inserted_count, 40);
    let stored = client
        .list_records(pb::ListRecordsRequest { page_size: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(stored.len(), 40, "only the written batch is stored");
    assert_ne!(app.snapshot().await, before);
}
}
