//! The methodology's worked example (section 8) as an integrator submits it: registry
//! calls, a first batch, then corrections.

use partnership_metrics::pb::{self, record::Kind};

use crate::{fixtures::rec, helpers::TestApp};

pub const PARTNERSHIP: &str = "pa-worked";

/// `(headcount_start, headcount_end, leavers, fixed_term, agency_staff)`.
fn wr(agency: &str, period: &str, counts: (i64, i64, i64, i64, i64), st: Option<(i64, i64)>) -> pb::Record {
    rec(Kind::WorkforceReturn(pb::WorkforceReturn {
        partnership: PARTNERSHIP.into(),
        agency: agency.into(),
        period: period.into(),
        headcount_start: counts.0,
        headcount_end: counts.1,
        joiners: (counts.1 - counts.0 + counts.2).max(0),
        leavers: counts.2,
        permanent: counts.1 - counts.3 - counts.4,
        fixed_term: counts.3,
        agency_staff: counts.4,
        staff_over_one_year_service: st.map(|s| s.0),
        headcount_one_year_ago: st.map(|s| s.1),
    }))
}

fn survey(rid: &str, period: &str, agency: &str, items: [i32; 5]) -> pb::Record {
    let o = |v: i32| (v != 0).then_some(v);
    rec(Kind::SurveyResponse(pb::SurveyResponse {
        partnership: PARTNERSHIP.into(),
        period: period.into(),
        response_id: rid.into(),
        respondent_agency: agency.into(),
        shared_vision: o(items[0]),
        shared_values: o(items[1]),
        morale: o(items[2]),
        loyalty: o(items[3]),
        motivation: o(items[4]),
    }))
}

fn contract(cid: &str, commissioner: &str, provider: &str, start: &str, end: &str) -> pb::Record {
    let delivery = if commissioner == provider { pb::Delivery::InHouse } else { pb::Delivery::Outsourced };
    rec(Kind::ServiceContract(pb::ServiceContract {
        partnership: PARTNERSHIP.into(),
        contract_id: cid.into(),
        service_name: "service".into(),
        commissioner: commissioner.into(),
        provider: provider.into(),
        delivery: delivery as i32,
        annual_value_pence: 100,
        start_date: start.into(),
        end_date: end.into(),
    }))
}

fn team(tid: &str, period: &str, reporter: &str, entries: &[(&str, pb::Employment, i64)]) -> pb::Record {
    rec(Kind::TeamComposition(pb::TeamComposition {
        partnership: PARTNERSHIP.into(),
        team_id: tid.into(),
        period: period.into(),
        reporting_agency: reporter.into(),
        entries: entries
            .iter()
            .map(|&(e, k, h)| pb::TeamEntry { employer: e.into(), employment: k as i32, headcount: h })
            .collect(),
    }))
}

fn rating(period: &str, rater: &str, ratee: &str, t: [i32; 3], v: [i32; 3]) -> pb::Record {
    rec(Kind::RelationshipRating(pb::RelationshipRating {
        partnership: PARTNERSHIP.into(),
        period: period.into(),
        rater: rater.into(),
        ratee: ratee.into(),
        reliability: t[0],
        mission_support: t[1],
        openness: t[2],
        power_influence: v[0],
        involvement: v[1],
        resource_contribution: v[2],
    }))
}

fn adoption(version: i64, date: &str) -> pb::Record {
    rec(Kind::PrinciplesAdoption(pb::PrinciplesAdoption {
        partnership: PARTNERSHIP.into(),
        version,
        title: "principles".into(),
        adoption_date: date.into(),
        reporting_agency: "nhs-a".into(),
    }))
}

fn endorsement(version: i64, agency: &str, date: &str) -> pb::Record {
    rec(Kind::PrinciplesEndorsement(pb::PrinciplesEndorsement {
        partnership: PARTNERSHIP.into(),
        version,
        agency: agency.into(),
        endorsement_date: date.into(),
    }))
}

fn event(agency: &str, eid: &str, date: &str) -> pb::Record {
    rec(Kind::RestructuringEvent(pb::RestructuringEvent {
        agency: agency.into(),
        event_id: eid.into(),
        date: date.into(),
        kind: pb::RestructuringKind::Merger as i32,
        staff_affected: 3,
    }))
}

fn budget(agency: &str, period: &str, pooled: i64, aligned: i64) -> pb::Record {
    rec(Kind::BudgetContribution(pb::BudgetContribution {
        partnership: PARTNERSHIP.into(),
        agency: agency.into(),
        period: period.into(),
        pooled_pence: pooled,
        aligned_pence: aligned,
    }))
}

/// Registers the example's agencies, partnership and memberships and submits its
/// records: a first batch, then the two corrections of section 8.
pub async fn load(app: &TestApp) {
    use pb::Employment::*;
    for a in ["nhs-a", "la-b", "vol-c", "priv-d", "priv-e"] {
        app.create_agency(a).await;
    }
    app.create_partnership(PARTNERSHIP).await;
    app.create_membership(PARTNERSHIP, "nhs-a", pb::Role::Lead, "2020-01-01", "").await;
    app.create_membership(PARTNERSHIP, "la-b", pb::Role::Member, "2021-06-01", "").await;
    app.create_membership(PARTNERSHIP, "vol-c", pb::Role::Member, "2026-08-15", "").await;
    app.create_membership(PARTNERSHIP, "priv-d", pb::Role::Member, "2020-01-01", "2026-09-29").await;
    let first = vec![
        adoption(1, "2025-01-10"),
        adoption(2, "2026-08-01"),
        adoption(3, "2026-10-15"),
        endorsement(2, "nhs-a", "2026-08-05"),
        endorsement(2, "la-b", "2026-09-30"),
        endorsement(1, "vol-c", "2025-02-01"),
        endorsement(2, "vol-c", "2026-10-01"),
        endorsement(2, "priv-d", "2026-08-10"),
        survey("r1", "202607", "nhs-a", [4, 4, 1, 5, 3]),
        survey("r2", "202607", "la-b", [4, 5, 3, 5, 4]),
        survey("r3", "202608", "vol-c", [5, 2, 3, 4, 5]),
        survey("r4", "2026Q3", "nhs-a", [3, 0, 4, 4, 2]),
        survey("r5", "202609", "la-b", [4, 0, 3, 3, 0]),
        survey("r6", "202609", "nhs-a", [0, 0, 0, 3, 0]),
        survey("r7", "2026", "nhs-a", [1, 1, 1, 1, 1]),
        survey("r8", "202610", "la-b", [1, 1, 1, 1, 1]),
        contract("c1", "nhs-a", "priv-d", "2026-01-01", "2027-12-31"),
        contract("c2", "la-b", "priv-e", "2025-01-01", "2026-06-30"),
        contract("c3", "vol-c", "nhs-a", "2026-09-30", "2027-09-30"),
        contract("c4", "la-b", "la-b", "2025-01-01", "2027-12-31"),
        contract("c5", "nhs-a", "priv-e", "2026-10-01", "2027-12-31"),
        team("team-1", "202607", "nhs-a", &[("nhs-a", Permanent, 9)]),
        team("team-1", "2026Q3", "nhs-a", &[("nhs-a", Permanent, 3), ("la-b", Permanent, 3)]),
        team(
            "team-1",
            "202609",
            "nhs-a",
            &[("nhs-a", Permanent, 6), ("nhs-a", FixedTerm, 2), ("priv-d", AgencyStaff, 2)],
        ),
        team("team-1", "202610", "nhs-a", &[("priv-d", AgencyStaff, 7)]),
        team("team-2", "2026Q3", "la-b", &[("la-b", Permanent, 5), ("vol-c", Permanent, 5)]),
        team("team-2", "2026", "la-b", &[("la-b", AgencyStaff, 1)]),
        wr("nhs-a", "2026Q3", (100, 110, 50, 15, 5), Some((80, 100))),
        wr("nhs-a", "202607", (100, 104, 2, 4, 0), None),
        wr("la-b", "202607", (50, 51, 1, 3, 3), None),
        wr("la-b", "202608", (51, 50, 1, 3, 2), None),
        wr("la-b", "202609", (50, 50, 1, 5, 5), Some((45, 50))),
        wr("vol-c", "202608", (20, 20, 0, 0, 0), None),
        wr("priv-d", "2026Q3", (10, 10, 9, 9, 0), None),
        rating("2026Q3", "nhs-a", "la-b", [4, 4, 4], [3, 3, 3]),
        rating("202609", "nhs-a", "la-b", [3, 3, 3], [2, 2, 2]),
        rating("202608", "la-b", "nhs-a", [4, 4, 4], [3, 3, 3]),
        rating("202607", "nhs-a", "vol-c", [2, 3, 4], [1, 2, 3]),
        rating("2026Q3", "vol-c", "priv-d", [1, 1, 1], [1, 1, 1]),
        rating("2026Q3", "priv-d", "nhs-a", [1, 1, 1], [1, 1, 1]),
        rating("202610", "la-b", "vol-c", [1, 1, 1], [1, 1, 1]),
        event("nhs-a", "e1", "2025-11-15"),
        event("nhs-a", "e2", "2026-09-30"),
        event("vol-c", "e3", "2025-10-01"),
        event("la-b", "e4", "2025-09-30"),
        event("la-b", "e5", "2024-10-01"),
        event("la-b", "e6", "2024-09-30"),
        event("priv-d", "e7", "2026-03-01"),
        budget("nhs-a", "2026Q3", 300_000, 100_000),
        budget("nhs-a", "202607", 999, 1),
        budget("la-b", "2026Q3", 0, 200_000),
    ];
    let mut client = app.submission();
    client
        .submit_records(pb::SubmitRecordsRequest {
            validate_only: false,
            request_id: "worked-1".into(),
            records: first,
        })
        .await
        .unwrap();
    // Corrections: r1's morale 1 -> 2, nhs-a's 2026Q3 leavers 50 -> 5.
    let corrections = vec![
        survey("r1", "202607", "nhs-a", [4, 4, 2, 5, 3]),
        wr("nhs-a", "2026Q3", (100, 110, 5, 15, 5), Some((80, 100))),
    ];
    let done = client
        .submit_records(pb::SubmitRecordsRequest {
            validate_only: false,
            request_id: "worked-2".into(),
            records: corrections,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.inserted_count, done.replaced_count), (0, 2));
}
