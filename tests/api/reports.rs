//! ReportService over gRPC: the worked example end to end, series, export, errors.

use std::collections::HashMap;

use partnership_metrics::pb::{self, indicator_input::Value};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::{
    helpers::{TestApp, assert_error, spawn_app},
    worked::{self, PARTNERSHIP},
};

fn request(partnership: &str, period: &str) -> pb::GetPartnershipReportRequest {
    pb::GetPartnershipReportRequest {
        partnership: partnership.into(),
        period: period.into(),
        ..Default::default()
    }
}

fn indicator<'a>(r: &'a pb::PartnershipReport, id: &str) -> &'a pb::Indicator {
    r.indicators.iter().find(|i| i.id == id).unwrap()
}

backend_test! {
async fn the_worked_example_submitted_over_grpc_gives_section_8s_report() {
    let app = spawn_app().await;
    worked::load(&app).await;
    let r = app.reports().get_partnership_report(request(PARTNERSHIP, "2026Q3")).await.unwrap().into_inner();

    assert_eq!(r.methodology_version, "1");
    assert_eq!(r.members, ["la-b", "nhs-a", "vol-c"]);
    let period = r.period.clone().unwrap();
    assert_eq!(
        (period.start_date.as_str(), period.end_date.as_str(), period.months),
        ("2026-07-01", "2026-09-30", 3)
    );
    assert_eq!(period.r#type, pb::PeriodType::Quarter as i32);
    assert_eq!(r.indicators.len(), 22);
    // The corrections took: morale answers 2, 3, 3, 4, 3 and nhs-a's 5 leavers.
    assert_eq!(indicator(&r, "survey_morale").value, Some(3.0));
    assert_eq!(indicator(&r, "leaver_rate_annualised").value, Some(0.18285714285714286));
    assert_eq!(indicator(&r, "vision_endorsement_coverage").value, Some(0.6666666666666666));
    let coverage = indicator(&r, "vision_endorsement_coverage");
    assert_eq!(coverage.goalposts, Some(pb::Goalposts { worst: 0.0, best: 1.0 }));
    assert_eq!(coverage.direction, pb::Direction::HigherIsBetter as i32);
    assert_eq!(
        coverage.inputs[0],
        pb::IndicatorInput { name: "adopted_version".into(), value: Some(Value::IntValue(2)) }
    );
    let leaver = indicator(&r, "leaver_rate_annualised");
    assert_eq!(leaver.direction, pb::Direction::LowerIsBetter as i32);
    assert_eq!(leaver.records_used, 5);
    let share = indicator(&r, "contractor_interface_share");
    assert!(!share.scored && share.goalposts.is_none() && share.score.is_none());
    assert_eq!(share.direction, pb::Direction::Unspecified as i32);
    let values = indicator(&r, "survey_shared_values");
    assert_eq!(values.missing_reason, pb::MissingReason::SuppressedSmallNumber as i32);
    let received = indicator(&r, "trust_received");
    assert_eq!(received.value, None);
    assert_eq!(
        received.trust_received_by_agency.iter().map(|t| t.value).collect::<Vec<_>>(),
        [3.0, 4.0, 3.0]
    );

    let domain_scores: Vec<Option<f64>> = r.domains.iter().map(|d| d.score).collect();
    assert_eq!(
        domain_scores,
        [
            Some(0.7083333333333333),
            Some(0.9735449735449735),
            Some(0.6950000000000001),
            Some(0.5468253968253969),
            Some(0.5925925925925926),
            Some(0.5833333333333334),
            Some(1.0)
        ]
    );
    let c = r.composite.clone().unwrap();
    assert_eq!(c.psi, Some(70.96011541469436));
    assert_eq!(c.band, pb::Band::Green as i32);
    assert_eq!(
        (c.psi_min, c.psi_max, c.band_stable),
        (Some(69.11206600162971), Some(72.60168366764574), Some(false))
    );
    assert_eq!(c.sensitivity.len(), 14);
    assert_eq!(c.top_drags.iter().map(|t| t.domain.as_str()).collect::<Vec<_>>(), ["D4", "D6", "D5"]);
    let alerts: Vec<i32> = r.alerts.iter().map(|a| a.code).collect();
    assert_eq!(
        alerts,
        [pb::AlertCode::RestructuringAccelerating as i32, pb::AlertCode::LowSurveyResponse as i32]
    );
    let coverage: Vec<i64> = r.coverage.unwrap().kinds.iter().map(|k| k.reporting_members).collect();
    assert_eq!(coverage, [3, 3, 2, 3, 3, 1, 2, 1, 2]);
    assert_eq!(r.weights.iter().map(|w| w.weight).collect::<Vec<_>>(), [1.0; 7]);

    // The same report again, bit for bit.
    let again =
        app.reports().get_partnership_report(request(PARTNERSHIP, "2026Q3")).await.unwrap().into_inner();
    assert_eq!(again.composite, Some(c));
}
}

backend_test! {
async fn options_change_weights_and_suppression() {
    let app = spawn_app().await;
    worked::load(&app).await;
    let r = app
        .reports()
        .get_partnership_report(pb::GetPartnershipReportRequest {
            partnership: PARTNERSHIP.into(),
            period: "2026Q3".into(),
            min_respondents: Some(3),
            weights: HashMap::from([("D4".to_string(), 3.0), ("D7".to_string(), 0.0)]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.min_respondents, 3);
    // Shared values' three answers now show: (4 + 5 + 2) / 3.
    assert_eq!(indicator(&r, "survey_shared_values").value, Some(3.6666666666666665));
    assert_eq!(r.weights.iter().map(|w| w.weight).collect::<Vec<_>>(), [1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 0.0]);
    assert_eq!(r.composite.unwrap().total_weight, Some(8.0));
}
}

backend_test! {
async fn bad_report_requests_name_their_fields() {
    let app = spawn_app().await;
    worked::load(&app).await;
    let mut client = app.reports();
    let err = client.get_partnership_report(request("nowhere", "2026Q3")).await.unwrap_err();
    assert_error(&err, Code::NotFound, "UNKNOWN_PARTNERSHIP", &["partnership"]);
    for period in ["2026Q5", "2026-09", "", "202613", "9999April"] {
        let err = client.get_partnership_report(request(PARTNERSHIP, period)).await.unwrap_err();
        assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["period"]);
    }
    // An invalid field beats an unknown partnership, and both are listed.
    let err = client.get_partnership_report(request("nowhere", "2026Q0")).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["partnership", "period"]);
    let err = client.get_partnership_report(request("Not An Id", "2026Q3")).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["partnership"]);
    let bad_options = pb::GetPartnershipReportRequest {
        partnership: PARTNERSHIP.into(),
        period: "2026Q3".into(),
        min_respondents: Some(0),
        weights: HashMap::from([("D8".to_string(), 1.0), ("D2".to_string(), f64::NAN)]),
    };
    let err = client.get_partnership_report(bad_options).await.unwrap_err();
    assert_error(
        &err,
        Code::InvalidArgument,
        "INVALID_REPORT_REQUEST",
        &["min_respondents", "weights[D2]", "weights[D8]"],
    );
    let zero = pb::GetPartnershipReportRequest {
        weights: ["D1", "D2", "D3", "D4", "D5", "D6", "D7"].iter().map(|d| (d.to_string(), 0.0)).collect(),
        ..request(PARTNERSHIP, "2026Q3")
    };
    let err = client.get_partnership_report(zero).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["weights"]);
}
}

backend_test! {
async fn a_series_pages_oldest_first_and_matches_single_reports() {
    let app = spawn_app().await;
    worked::load(&app).await;
    let mut client = app.reports();
    let series = |token: String| pb::ListPartnershipReportsRequest {
        partnership: PARTNERSHIP.into(),
        start_period: "2025Q3".into(),
        end_period: "2026Q4".into(),
        page_size: 4,
        page_token: token,
        ..Default::default()
    };
    let first = client.list_partnership_reports(series(String::new())).await.unwrap().into_inner();
    let ids: Vec<String> = first.reports.iter().map(|r| r.period.clone().unwrap().id).collect();
    assert_eq!(ids, ["2025Q3", "2025Q4", "2026Q1", "2026Q2"]);
    let second = client.list_partnership_reports(series(first.next_page_token)).await.unwrap().into_inner();
    let ids: Vec<String> = second.reports.iter().map(|r| r.period.clone().unwrap().id).collect();
    assert_eq!(ids, ["2026Q3", "2026Q4"]);
    assert!(second.next_page_token.is_empty());
    let single = client.get_partnership_report(request(PARTNERSHIP, "2026Q3")).await.unwrap().into_inner();
    assert_eq!(second.reports[0], single, "a series member equals the single report");

    let bad = pb::ListPartnershipReportsRequest {
        partnership: PARTNERSHIP.into(),
        start_period: "2026Q3".into(),
        end_period: "202609".into(),
        ..Default::default()
    };
    let err = client.list_partnership_reports(bad).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["end_period"]);
    let backwards = pb::ListPartnershipReportsRequest {
        partnership: PARTNERSHIP.into(),
        start_period: "2026Q3".into(),
        end_period: "2026Q1".into(),
        ..Default::default()
    };
    let err = client.list_partnership_reports(backwards).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["end_period"]);
}
}

/// Every report of one ExportReports call for `period`, in the order sent.
async fn export_all(app: &TestApp, period: &str) -> Vec<pb::PartnershipReport> {
    let mut stream = app
        .reports()
        .export_reports(pb::ExportReportsRequest { period: period.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut reports = Vec::new();
    while let Some(item) = stream.next().await {
        reports.push(item.unwrap().report.unwrap());
    }
    reports
}

backend_test! {
async fn export_streams_every_partnership_in_id_order() {
    let app = spawn_app().await;
    worked::load(&app).await;
    for p in ["pb-empty", "aa-first"] {
        app.create_partnership(p).await;
    }
    let seen: Vec<_> = export_all(&app, "2026Q3")
        .await
        .into_iter()
        .map(|report| (report.partnership, report.composite.unwrap().psi))
        .collect();
    assert_eq!(
        seen,
        [
            ("aa-first".to_string(), None),
            (PARTNERSHIP.to_string(), Some(70.96011541469436)),
            ("pb-empty".to_string(), None)
        ]
    );
    let err = app
        .reports()
        .export_reports(pb::ExportReportsRequest { period: "2026Q9".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REPORT_REQUEST", &["period"]);
}
}

backend_test! {
async fn export_crosses_chunk_boundaries_without_losing_or_repeating_a_partnership() {
    let app = spawn_app().await;
    // The export reads partnerships in chunks of 100 and computes the next chunk while
    // sending the current one; 250 covers full chunks, a partial last one and the seams.
    let mut expected: Vec<String> = (0..250).map(|i| format!("p-{:03}", (i * 7) % 250)).collect();
    for p in &expected {
        app.create_partnership(p).await;
    }
    expected.sort();
    let seen: Vec<String> =
        export_all(&app, "2026Q3").await.into_iter().map(|report| report.partnership).collect();
    assert_eq!(seen, expected);
}
}

/// A write that reaches the worked example's 2026Q3 report without naming the
/// partnership: a restructuring event of a member agency names only the agency.
async fn member_restructures(app: &TestApp) {
    let event = crate::fixtures::rec(pb::record::Kind::RestructuringEvent(pb::RestructuringEvent {
        agency: "la-b".into(),
        event_id: "late-change".into(),
        date: "2026-07-20".into(),
        kind: pb::RestructuringKind::Reorganisation as i32,
        staff_affected: 12,
    }));
    app.submission()
        .submit_records(pb::SubmitRecordsRequest {
            validate_only: false,
            request_id: "indirect-1".into(),
            records: vec![event],
        })
        .await
        .unwrap();
}

/// A registry write that changes the report: vol-c leaves before the quarter ends.
async fn member_leaves(app: &TestApp) {
    app.registry()
        .update_membership(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                name: format!("partnerships/{PARTNERSHIP}/memberships/vol-c"),
                end_date: "2026-09-01".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["end_date".into()] }),
        })
        .await
        .unwrap();
}

backend_test! {
async fn a_cached_report_never_outlives_a_write_that_changes_it() {
    let get = |app: &TestApp| {
        let mut client = app.reports();
        async move { client.get_partnership_report(request(PARTNERSHIP, "2026Q3")).await.unwrap().into_inner() }
    };
    let app = spawn_app().await;
    worked::load(&app).await;
    let before = get(&app).await;
    assert_eq!(get(&app).await, before, "the same report again, from the cache");
    assert_eq!(export_all(&app, "2026Q3").await, std::slice::from_ref(&before));

    member_restructures(&app).await;
    let restructured = get(&app).await;
    assert_ne!(restructured, before, "a member's restructuring changes the report");
    assert_eq!(export_all(&app, "2026Q3").await, std::slice::from_ref(&restructured));

    member_leaves(&app).await;
    let left = get(&app).await;
    assert_ne!(left, restructured, "a member leaving changes the report");
    assert_eq!(export_all(&app, "2026Q3").await, std::slice::from_ref(&left));

    // A server that never cached the earlier reports computes the same ones.
    let fresh = spawn_app().await;
    worked::load(&fresh).await;
    member_restructures(&fresh).await;
    assert_eq!(get(&fresh).await, restructured);
    member_leaves(&fresh).await;
    assert_eq!(get(&fresh).await, left);
}
}
