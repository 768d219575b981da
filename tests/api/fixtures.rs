//! Valid records of every kind, for tests to submit or to spoil one field at a time.
//!
//! The registry they assume (see [`registry`]): agencies nhs-a, la-b, vol-c, priv-d;
//! partnership `pa` with nhs-a as LEAD since 2020-01-01 and la-b, vol-c as members.

use partnership_metrics::pb::{self, record::Kind};

use crate::helpers::TestApp;

pub async fn registry(app: &TestApp) {
    for a in ["nhs-a", "la-b", "vol-c", "priv-d"] {
        app.create_agency(a).await;
    }
    app.create_partnership("pa").await;
    app.create_membership("pa", "nhs-a", pb::Role::Lead, "2020-01-01", "").await;
    app.create_membership("pa", "la-b", pb::Role::Member, "2021-06-01", "").await;
    app.create_membership("pa", "vol-c", pb::Role::Member, "2026-08-15", "").await;
}

pub fn rec(kind: Kind) -> pb::Record {
    pb::Record { kind: Some(kind) }
}

pub fn workforce() -> pb::WorkforceReturn {
    pb::WorkforceReturn {
        partnership: "pa".into(),
        agency: "nhs-a".into(),
        period: "2026Q3".into(),
        headcount_start: 100,
        headcount_end: 110,
        joiners: 15,
        leavers: 5,
        permanent: 90,
        fixed_term: 15,
        agency_staff: 5,
        staff_over_one_year_service: Some(80),
        headcount_one_year_ago: Some(100),
    }
}

pub fn contract() -> pb::ServiceContract {
    pb::ServiceContract {
        partnership: "pa".into(),
        contract_id: "c1".into(),
        service_name: "Home care".into(),
        commissioner: "nhs-a".into(),
        provider: "priv-d".into(),
        delivery: pb::Delivery::Outsourced as i32,
        annual_value_pence: 12_000_000,
        start_date: "2026-01-01".into(),
        end_date: "2027-12-31".into(),
    }
}

pub fn team() -> pb::TeamComposition {
    pb::TeamComposition {
        partnership: "pa".into(),
        team_id: "team-1".into(),
        period: "202609".into(),
        reporting_agency: "nhs-a".into(),
        entries: vec![
            pb::TeamEntry {
                employer: "nhs-a".into(),
                employment: pb::Employment::Permanent as i32,
                headcount: 6,
            },
            pb::TeamEntry {
                employer: "nhs-a".into(),
                employment: pb::Employment::FixedTerm as i32,
                headcount: 2,
            },
            pb::TeamEntry {
                employer: "priv-d".into(),
                employment: pb::Employment::AgencyStaff as i32,
                headcount: 2,
            },
        ],
    }
}

pub fn survey() -> pb::SurveyResponse {
    pb::SurveyResponse {
        partnership: "pa".into(),
        period: "202607".into(),
        response_id: "r1".into(),
        respondent_agency: "nhs-a".into(),
        shared_vision: Some(4),
        shared_values: Some(4),
        morale: Some(2),
        loyalty: Some(5),
        motivation: Some(3),
    }
}

pub fn rating() -> pb::RelationshipRating {
    pb::RelationshipRating {
        partnership: "pa".into(),
        period: "2026Q3".into(),
        rater: "nhs-a".into(),
        ratee: "la-b".into(),
        reliability: 4,
        mission_support: 4,
        openness: 4,
        power_influence: 3,
        involvement: 3,
        resource_contribution: 3,
    }
}

pub fn adoption() -> pb::PrinciplesAdoption {
    pb::PrinciplesAdoption {
        partnership: "pa".into(),
        version: 1,
        title: "Our shared principles".into(),
        adoption_date: "2025-01-10".into(),
        reporting_agency: "nhs-a".into(),
    }
}

pub fn endorsement() -> pb::PrinciplesEndorsement {
    pb::PrinciplesEndorsement {
        partnership: "pa".into(),
        version: 1,
        agency: "la-b".into(),
        endorsement_date: "2025-02-01".into(),
    }
}

pub fn event() -> pb::RestructuringEvent {
    pb::RestructuringEvent {
        agency: "nhs-a".into(),
        event_id: "ev-1".into(),
        date: "2025-11-15".into(),
        kind: pb::RestructuringKind::Reorganisation as i32,
        staff_affected: 40,
    }
}

pub fn budget() -> pb::BudgetContribution {
    pb::BudgetContribution {
        partnership: "pa".into(),
        agency: "nhs-a".into(),
        period: "2026Q3".into(),
        pooled_pence: 300_000,
        aligned_pence: 100_000,
    }
}

/// One valid record of each of the nine kinds, the adoption before its endorsement.
pub fn all_nine() -> Vec<pb::Record> {
    vec![
        rec(Kind::WorkforceReturn(workforce())),
        rec(Kind::ServiceContract(contract())),
        rec(Kind::TeamComposition(team())),
        rec(Kind::SurveyResponse(survey())),
        rec(Kind::RelationshipRating(rating())),
        rec(Kind::PrinciplesAdoption(adoption())),
        rec(Kind::PrinciplesEndorsement(endorsement())),
        rec(Kind::RestructuringEvent(event())),
        rec(Kind::BudgetContribution(budget())),
    ]
}

pub fn submit_request(request_id: &str, records: Vec<pb::Record>) -> pb::SubmitRecordsRequest {
    pb::SubmitRecordsRequest { validate_only: false, request_id: request_id.into(), records }
}
