//! Golden tests: each expected value is worked out by hand in the comments (or copied
//! from the methodology's worked example, section 8), never computed by the engine.

use proptest::prelude::*;

use super::{
    ReportOptions,
    composite::{band, psi},
    compute,
    report::{AlertCode, Band, Domain, InputValue, MissingReason, Report},
};
use crate::domain::{
    Date, Id, Period, Timestamp,
    records::{
        BudgetContribution, Delivery, Employment, PrinciplesAdoption, PrinciplesEndorsement, Record,
        RecordKind, RelationshipRating, RestructuringEvent, RestructuringKind, ServiceContract, Stability,
        SurveyItems, SurveyResponse, TeamComposition, TeamEntry, WorkforceReturn,
    },
    registry::{Membership, MembershipTerms, Role},
};

const PA: &str = "pa-worked";

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}
fn d(s: &str) -> Date {
    Date::parse(s).unwrap()
}
fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn member(agency: &str, role: Role, start: &str, end: Option<&str>) -> Membership {
    Membership {
        partnership: id(PA),
        agency: id(agency),
        terms: MembershipTerms { role, start_date: d(start), end_date: end.map(d) },
        create_time: Timestamp(0),
        update_time: Timestamp(0),
    }
}

/// (headcount_start, headcount_end, leavers, fixed_term, agency_staff); joiners and
/// permanent are derived so the record passes its checks.
fn wr(
    agency: &str,
    period: &str,
    (hs, he, leavers, ft, ag): (i64, i64, i64, i64, i64),
    stability: Option<(i64, i64)>,
) -> Record {
    Record::WorkforceReturn(WorkforceReturn {
        partnership: id(PA),
        agency: id(agency),
        period: p(period),
        headcount_start: hs,
        headcount_end: he,
        joiners: (he - hs + leavers).max(0),
        leavers,
        permanent: he - ft - ag,
        fixed_term: ft,
        agency_staff: ag,
        stability: stability
            .map(|(o, a)| Stability { staff_over_one_year_service: o, headcount_one_year_ago: a }),
    })
}

fn contract(cid: &str, commissioner: &str, provider: &str, start: &str, end: &str) -> Record {
    Record::ServiceContract(ServiceContract {
        partnership: id(PA),
        contract_id: id(cid),
        service_name: "service".into(),
        commissioner: id(commissioner),
        provider: id(provider),
        delivery: if commissioner == provider { Delivery::InHouse } else { Delivery::Outsourced },
        annual_value_pence: 1,
        start_date: d(start),
        end_date: d(end),
    })
}

fn team(team_id: &str, period: &str, reporter: &str, entries: &[(&str, Employment, i64)]) -> Record {
    Record::TeamComposition(TeamComposition {
        partnership: id(PA),
        team_id: id(team_id),
        period: p(period),
        reporting_agency: id(reporter),
        entries: entries
            .iter()
            .map(|&(e, employment, headcount)| TeamEntry { employer: id(e), employment, headcount })
            .collect(),
    })
}

/// Items in order shared_vision, shared_values, morale, loyalty, motivation; 0 is absent.
fn survey(rid: &str, period: &str, agency: &str, items: [u8; 5]) -> Record {
    let o = |v: u8| (v != 0).then_some(v);
    Record::SurveyResponse(SurveyResponse {
        partnership: id(PA),
        period: p(period),
        response_id: id(rid),
        respondent_agency: id(agency),
        items: SurveyItems {
            shared_vision: o(items[0]),
            shared_values: o(items[1]),
            morale: o(items[2]),
            loyalty: o(items[3]),
            motivation: o(items[4]),
        },
    })
}

/// Trust items (reliability, mission_support, openness), then value items.
fn rating(period: &str, rater: &str, ratee: &str, t: [u8; 3], v: [u8; 3]) -> Record {
    Record::RelationshipRating(RelationshipRating {
        partnership: id(PA),
        period: p(period),
        rater: id(rater),
        ratee: id(ratee),
        reliability: t[0],
        mission_support: t[1],
        openness: t[2],
        power_influence: v[0],
        involvement: v[1],
        resource_contribution: v[2],
    })
}

fn adoption(version: i64, date: &str, agency: &str) -> Record {
    Record::PrinciplesAdoption(PrinciplesAdoption {
        partnership: id(PA),
        version,
        title: "principles".into(),
        adoption_date: d(date),
        reporting_agency: id(agency),
    })
}

fn endorsement(version: i64, agency: &str, date: &str) -> Record {
    Record::PrinciplesEndorsement(PrinciplesEndorsement {
        partnership: id(PA),
        version,
        agency: id(agency),
        endorsement_date: d(date),
    })
}

fn event(agency: &str, event_id: &str, date: &str) -> Record {
    Record::RestructuringEvent(RestructuringEvent {
        agency: id(agency),
        event_id: id(event_id),
        date: d(date),
        kind: RestructuringKind::Reorganisation,
        staff_affected: 1,
    })
}

fn budget(agency: &str, period: &str, pooled: i64, aligned: i64) -> Record {
    Record::BudgetContribution(BudgetContribution {
        partnership: id(PA),
        agency: id(agency),
        period: p(period),
        pooled_pence: pooled,
        aligned_pence: aligned,
    })
}

fn report(members: &[Membership], records: &[Record], period: &str) -> Report {
    compute(&id(PA), p(period), members, records, &ReportOptions::default())
}

fn value(r: &Report, indicator: &str) -> Option<f64> {
    r.indicator(indicator).unwrap().value
}
fn score_of(r: &Report, indicator: &str) -> Option<f64> {
    r.indicator(indicator).unwrap().score
}
fn missing(r: &Report, indicator: &str) -> Option<MissingReason> {
    r.indicator(indicator).unwrap().missing
}
fn input(r: &Report, indicator: &str, name: &str) -> InputValue {
    r.indicator(indicator).unwrap().inputs.iter().find(|(n, _)| *n == name).unwrap().1.clone()
}
fn used(r: &Report, indicator: &str) -> u64 {
    r.indicator(indicator).unwrap().records_used
}
fn domain(r: &Report, dom: Domain) -> Option<f64> {
    r.domains[dom.index()].score
}

/// The registry and records of the methodology's worked example (section 8).
fn worked_example() -> (Vec<Membership>, Vec<Record>) {
    use Employment::*;
    let members = vec![
        member("nhs-a", Role::Lead, "2020-01-01", None),
        member("la-b", Role::Member, "2021-06-01", None),
        member("vol-c", Role::Member, "2026-08-15", None),
        member("priv-d", Role::Member, "2020-01-01", Some("2026-09-29")),
    ];
    let records = vec![
        // D1
        adoption(1, "2025-01-10", "nhs-a"),
        adoption(2, "2026-08-01", "nhs-a"),
        adoption(3, "2026-10-15", "nhs-a"),
        endorsement(2, "nhs-a", "2026-08-05"),
        endorsement(2, "la-b", "2026-09-30"),
        endorsement(1, "vol-c", "2025-02-01"),
        endorsement(2, "vol-c", "2026-10-01"),
        endorsement(2, "priv-d", "2026-08-10"),
        survey("r1", "202607", "nhs-a", [4, 4, 2, 5, 3]),
        survey("r2", "202607", "la-b", [4, 5, 3, 5, 4]),
        survey("r3", "202608", "vol-c", [5, 2, 3, 4, 5]),
        survey("r4", "2026Q3", "nhs-a", [3, 0, 4, 4, 2]),
        survey("r5", "202609", "la-b", [4, 0, 3, 3, 0]),
        survey("r6", "202609", "nhs-a", [0, 0, 0, 3, 0]),
        survey("r7", "2026", "nhs-a", [1, 1, 1, 1, 1]),
        survey("r8", "202610", "la-b", [1, 1, 1, 1, 1]),
        // D2
        contract("c1", "nhs-a", "priv-d", "2026-01-01", "2027-12-31"),
        contract("c2", "la-b", "priv-e", "2025-01-01", "2026-06-30"),
        contract("c3", "vol-c", "nhs-a", "2026-09-30", "2027-09-30"),
        contract("c4", "la-b", "la-b", "2025-01-01", "2027-12-31"),
        contract("c5", "nhs-a", "priv-e", "2026-10-01", "2027-12-31"),
        // D3
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
        // D4: (hs, he, leavers, fixed_term, agency_staff)
        wr("nhs-a", "2026Q3", (100, 110, 5, 15, 5), Some((80, 100))),
        wr("nhs-a", "202607", (100, 104, 2, 4, 0), None),
        wr("la-b", "202607", (50, 51, 1, 3, 3), None),
        wr("la-b", "202608", (51, 50, 1, 3, 2), None),
        wr("la-b", "202609", (50, 50, 1, 5, 5), Some((45, 50))),
        wr("vol-c", "202608", (20, 20, 0, 0, 0), None),
        wr("priv-e", "2026Q3", (10, 10, 9, 9, 0), None),
        // D5
        rating("2026Q3", "nhs-a", "la-b", [4, 4, 4], [3, 3, 3]),
        rating("202609", "nhs-a", "la-b", [3, 3, 3], [2, 2, 2]),
        rating("202608", "la-b", "nhs-a", [4, 4, 4], [3, 3, 3]),
        rating("202607", "nhs-a", "vol-c", [2, 3, 4], [1, 2, 3]),
        rating("2026Q3", "vol-c", "priv-d", [1, 1, 1], [1, 1, 1]),
        rating("2026Q3", "priv-d", "nhs-a", [1, 1, 1], [1, 1, 1]),
        rating("202610", "la-b", "vol-c", [1, 1, 1], [1, 1, 1]),
        // D6
        event("nhs-a", "e1", "2025-11-15"),
        event("nhs-a", "e2", "2026-09-30"),
        event("vol-c", "e3", "2025-10-01"),
        event("la-b", "e4", "2025-09-30"),
        event("la-b", "e5", "2024-10-01"),
        event("la-b", "e6", "2024-09-30"),
        event("priv-d", "e7", "2026-03-01"),
        // D7
        budget("nhs-a", "2026Q3", 300_000, 100_000),
        budget("nhs-a", "202607", 999, 1),
        budget("la-b", "2026Q3", 0, 200_000),
    ];
    (members, records)
}

#[test]
fn worked_example_matches_section_8_number_for_number() {
    let (members, records) = worked_example();
    let r = report(&members, &records, "2026Q3");
    // M(P): priv-d ended the day before end(P); vol-c joined in P and counts.
    assert_eq!(r.members, [id("la-b"), id("nhs-a"), id("vol-c")]);

    // D1: V = 2; v2 endorsed on or before 2026-09-30 by nhs-a and la-b: 2/3.
    assert_eq!(value(&r, "vision_endorsement_coverage"), Some(0.6666666666666666));
    assert_eq!(input(&r, "vision_endorsement_coverage", "adopted_version"), InputValue::Int(2));
    assert_eq!(used(&r, "vision_endorsement_coverage"), 3);
    // Shared vision answers 4, 4, 5, 3, 4: 20 / 5 = 4.0, score (4 - 1) / 4 = 0.75.
    assert_eq!(value(&r, "survey_shared_vision"), Some(4.0));
    assert_eq!(score_of(&r, "survey_shared_vision"), Some(0.75));
    assert_eq!(domain(&r, Domain::D1), Some(0.7083333333333333));

    // D2: C = {c1, c3}; k = |{la-b, nhs-a, vol-c, priv-d}| = 4, q = 1, I = 6.
    assert_eq!(value(&r, "possible_interfaces"), Some(6.0));
    assert_eq!(score_of(&r, "possible_interfaces"), Some(0.9735449735449735));
    assert_eq!(input(&r, "possible_interfaces", "non_member_providers"), InputValue::Int(1));
    assert_eq!(value(&r, "contractor_interface_share"), Some(0.5));
    assert_eq!(score_of(&r, "contractor_interface_share"), None);
    assert_eq!(domain(&r, Domain::D2), Some(0.9735449735449735));

    // D3: team-1 202609 term (100 - 68) / 10 = 3.2, team-2 term 5.0; 8.2 / 20 = 0.41.
    assert_eq!(value(&r, "team_employer_heterogeneity"), Some(0.41));
    assert_eq!(score_of(&r, "team_employer_heterogeneity"), Some(0.5900000000000001));
    assert_eq!(value(&r, "team_contracted_share"), Some(0.2));
    assert_eq!(score_of(&r, "team_contracted_share"), Some(0.8));
    assert_eq!(missing(&r, "survey_shared_values"), Some(MissingReason::SuppressedSmallNumber));
    assert_eq!(input(&r, "survey_shared_values", "answers"), InputValue::Int(3));
    assert_eq!(
        r.indicator("survey_shared_values").unwrap().inputs.len(),
        1,
        "suppressed shows only its count"
    );
    assert_eq!(domain(&r, Domain::D3), Some(0.6950000000000001));

    // D4: N = 12 + 20 + 0 = 32 (la-b, nhs-a, vol-c), D = 350 / 2 = 175.
    assert_eq!(value(&r, "leaver_rate_annualised"), Some(0.18285714285714286));
    assert_eq!(score_of(&r, "leaver_rate_annualised"), Some(0.3904761904761905));
    assert_eq!(used(&r, "leaver_rate_annualised"), 5);
    assert_eq!(input(&r, "leaver_rate_annualised", "annualised_leavers"), InputValue::Float(32.0));
    assert_eq!(input(&r, "leaver_rate_annualised", "average_headcount"), InputValue::Float(175.0));
    assert_eq!(value(&r, "short_term_share"), Some(0.16666666666666666));
    assert_eq!(score_of(&r, "short_term_share"), Some(0.6666666666666667));
    assert_eq!(value(&r, "stability_index"), Some(0.8333333333333334));
    assert_eq!(score_of(&r, "stability_index"), Some(0.5833333333333335));
    assert_eq!(domain(&r, Domain::D4), Some(0.5468253968253969));

    // D5: ties nhs-a->la-b (202609: s 9, v 6), la-b->nhs-a (s 12, v 9), nhs-a->vol-c (s 9, v 6).
    assert_eq!(value(&r, "network_trust"), Some(3.3333333333333335));
    assert_eq!(score_of(&r, "network_trust"), Some(0.7777777777777778));
    assert_eq!(value(&r, "network_value"), Some(2.3333333333333335));
    assert_eq!(value(&r, "network_density"), Some(0.5));
    assert_eq!(value(&r, "reciprocity"), Some(0.5));
    assert_eq!(value(&r, "rating_asymmetry"), Some(1.0));
    let received: Vec<(String, f64, u64)> = r
        .indicator("trust_received")
        .unwrap()
        .by_agency
        .iter()
        .map(|t| (t.agency.to_string(), t.value, t.ties))
        .collect();
    assert_eq!(received, [("la-b".into(), 3.0, 1), ("nhs-a".into(), 4.0, 1), ("vol-c".into(), 3.0, 1)]);
    assert_eq!(value(&r, "trust_received"), None);
    assert_eq!(missing(&r, "trust_received"), None);
    assert_eq!(domain(&r, Domain::D5), Some(0.5925925925925926));

    // D6: window 2025-10-01..2026-09-30 has 3 events, the previous window 2.
    assert_eq!(value(&r, "restructuring_rate"), Some(1.0));
    assert_eq!(score_of(&r, "restructuring_rate"), Some(0.5));
    assert_eq!(value(&r, "restructuring_acceleration"), Some(1.0));
    assert_eq!(input(&r, "restructuring_rate", "window_first_day"), InputValue::Date("2025-10-01".into()));
    assert_eq!(
        input(&r, "restructuring_acceleration", "previous_window_first_day"),
        InputValue::Date("2024-10-01".into())
    );
    assert_eq!(
        input(&r, "restructuring_acceleration", "previous_window_last_day"),
        InputValue::Date("2025-09-30".into())
    );
    assert_eq!(value(&r, "survey_morale"), Some(3.0));
    assert_eq!(value(&r, "survey_loyalty"), Some(4.0));
    assert_eq!(missing(&r, "survey_motivation"), Some(MissingReason::SuppressedSmallNumber));
    assert_eq!(domain(&r, Domain::D6), Some(0.5833333333333334));

    // D7: nhs-a keeps its quarter only; 300000 / 600000 = 0.5, score 1.
    assert_eq!(value(&r, "pooled_budget_share"), Some(0.5));
    assert_eq!(score_of(&r, "pooled_budget_share"), Some(1.0));
    assert_eq!(domain(&r, Domain::D7), Some(1.0));

    let c = &r.composite;
    assert_eq!(c.psi, Some(70.96011541469436));
    assert_eq!(c.band, Some(Band::Green));
    assert_eq!(c.psi_min, Some(69.11206600162971));
    assert_eq!(c.psi_max, Some(72.60168366764574));
    assert_eq!(c.band_stable, Some(false));
    let run = |dom: Domain, factor: f64| {
        c.sensitivity.iter().find(|s| s.domain == dom && s.factor == factor).unwrap().psi
    };
    assert_eq!(run(Domain::D7, 0.5), 69.11206600162971);
    assert_eq!(run(Domain::D2, 0.5), 69.25475011757707);
    assert_eq!(run(Domain::D4, 1.5), 69.73807213873287);
    let drags: Vec<(Domain, f64)> = c.top_drags.iter().map(|t| (t.domain, t.term)).collect();
    assert_eq!(
        drags,
        [
            (Domain::D4, 0.08623224699026644),
            (Domain::D6, 0.07699950010466955),
            (Domain::D5, 0.07474973482350683)
        ]
    );

    let alerts: Vec<AlertCode> = r.alerts.iter().map(|a| a.code).collect();
    assert_eq!(alerts, [AlertCode::RestructuringAccelerating, AlertCode::LowSurveyResponse]);
    assert_eq!(r.alerts[1].indicator_ids, ["survey_shared_values", "survey_motivation"]);

    let coverage: Vec<u64> = r.coverage.iter().map(|&(_, n)| n).collect();
    assert_eq!(coverage, [3, 3, 2, 3, 3, 1, 2, 1, 2]);
    assert_eq!(r.coverage[0].0, RecordKind::WorkforceReturn);
}

#[test]
fn records_of_other_partnerships_never_count() {
    let (members, mut records) = worked_example();
    let base = report(&members, &records, "2026Q3");
    if let Record::BudgetContribution(b) = &mut budget("nhs-a", "2026Q3", 1, 0) {
        b.partnership = id("elsewhere");
        records.push(Record::BudgetContribution(b.clone()));
    }
    assert_eq!(report(&members, &records, "2026Q3"), base);
}

#[test]
fn the_score_function_clamps_and_never_returns_negative_zero() {
    use super::{engine::score, report::Goalposts};
    let lower = Goalposts { worst: 0.3, best: 0.0 };
    // (0.3 - 0.3) / (0 - 0.3) = -0.0, reported as +0.0.
    assert_eq!(score(0.3, lower).to_bits(), 0.0f64.to_bits());
    assert_eq!(score(0.9, lower), 0.0);
    assert_eq!(score(-0.1, lower), 1.0);
    // k = 10: I = 45, (45 - 190) / (1 - 190) = 145 / 189 = 0.7671957671957672.
    assert_eq!(score(45.0, Goalposts { worst: 190.0, best: 1.0 }), 0.7671957671957672);
    assert_eq!(score(0.0, Goalposts { worst: 190.0, best: 1.0 }), 1.0);
}

#[test]
fn bands_compare_exactly_at_their_thresholds() {
    assert_eq!(band(70.0), Band::Green);
    assert_eq!(band(70.0f64.next_down()), Band::Amber);
    assert_eq!(band(70.0f64.next_up()), Band::Green);
    assert_eq!(band(50.0), Band::Amber);
    assert_eq!(band(50.0f64.next_down()), Band::Red);
    assert_eq!(band(50.0f64.next_up()), Band::Amber);
    assert_eq!(band(1.0), Band::Red);
    assert_eq!(band(100.0), Band::Green);
}

#[test]
fn the_index_keeps_the_rounding_the_methodology_prescribes() {
    // Exact arithmetic would give 50 and 70; IEEE with libm pow gives these (section 4).
    assert_eq!(psi(&[(0.5, 1.0); 5]), Some(49.99999999999999));
    assert_eq!(psi(&[(0.7, 1.0); 7]), Some(69.99999999999999));
    assert_eq!(psi(&[(0.7, 1.0); 5]), Some(70.0));
    assert_eq!(band(49.99999999999999), Band::Red);
    assert_eq!(band(69.99999999999999), Band::Amber);
    // Floors: a domain at 0 counts as 0.01. pow(0.01, 0.2) = 0.39810717055349726, and
    // multiplying five of them from 1.0 gives 0.010000000000000002, so the index is
    // 1.0000000000000002: inside [1, 100], the clamp leaves it.
    assert_eq!(psi(&[(0.0, 1.0); 5]), Some(1.0000000000000002));
    assert_eq!(psi(&[(1.0, 0.0); 5]), None, "weights summing to 0 give no index");
}

fn domains_of(scores: [(Option<f64>, f64); 7]) -> Vec<super::report::DomainResult> {
    Domain::ALL
        .into_iter()
        .zip(scores)
        .map(|(domain, (score, weight))| super::report::DomainResult {
            domain,
            score,
            weight,
            indicator_ids: Vec::new(),
            present: u32::from(score.is_some()),
        })
        .collect()
}

#[test]
fn a_zero_domain_is_floored_at_one_hundredth_in_the_index_only() {
    use super::composite::composite;
    // D1 scores 0, the other six 1: PSI = 100 * pow(0.01, 1/7) * 1^6.
    // pow(0.01, 1/7) = 0.5179474679231212 (libm), so PSI = 51.79474679231212 (AMBER).
    let mut scores = [(Some(1.0), 1.0); 7];
    scores[0] = (Some(0.0), 1.0);
    let c = composite(&domains_of(scores));
    assert_eq!(c.psi, Some(51.79474679231212));
    assert_eq!(c.band, Some(Band::Amber));
    // The only drag: (1/7) * -ln(0.01) = 0.6578814551411558; domains at 1 are no drags.
    let drags: Vec<(Domain, f64)> = c.top_drags.iter().map(|t| (t.domain, t.term)).collect();
    assert_eq!(drags, [(Domain::D1, 0.6578814551411558)]);
}

#[test]
fn top_drags_weigh_domains_and_break_ties_by_number() {
    use super::composite::composite;
    // Present: D1 0.5 (w 2), D2 0.25 (w 1), D3 0.9 (w 5), D4 1.0 (w 1), D5 0.6 (w 0); W = 9.
    // Terms: D1 (2/9) ln 2 and D2 (1/9) ln 4 are equal, 0.15403270679109896, so D1 comes
    // first by number; D3 (5/9) * -ln(0.9) = 0.058533619809903494; D4 scores 1 and D5
    // weighs 0: neither is a drag.
    let scores = [
        (Some(0.5), 2.0),
        (Some(0.25), 1.0),
        (Some(0.9), 5.0),
        (Some(1.0), 1.0),
        (Some(0.6), 0.0),
        (None, 1.0),
        (None, 1.0),
    ];
    let c = composite(&domains_of(scores));
    let drags: Vec<(Domain, f64)> = c.top_drags.iter().map(|t| (t.domain, t.term)).collect();
    assert_eq!(
        drags,
        [
            (Domain::D1, 0.15403270679109896),
            (Domain::D2, 0.15403270679109896),
            (Domain::D3, 0.058533619809903494)
        ]
    );
    // PSI = 100 * 0.5^(2/9) * 0.25^(1/9) * 0.9^(5/9) * 1^(1/9) * 0.6^0 = 69.30874942780943.
    assert_eq!(c.psi, Some(69.30874942780943));
    assert_eq!(c.total_weight, Some(9.0));
    // A domain of weight 0 still has its two runs, and they equal the base.
    let d5: Vec<f64> = c.sensitivity.iter().filter(|r| r.domain == Domain::D5).map(|r| r.psi).collect();
    assert_eq!(d5, [69.30874942780943, 69.30874942780943]);
    assert_eq!(c.sensitivity.len(), 10);
}

#[test]
fn fewer_than_five_domains_give_no_index() {
    use super::composite::composite;
    let scores = [
        (Some(0.5), 1.0),
        (Some(0.5), 1.0),
        (None, 1.0),
        (Some(0.5), 1.0),
        (None, 1.0),
        (Some(0.5), 1.0),
        (None, 1.0),
    ];
    let c = composite(&domains_of(scores));
    assert_eq!((c.psi, c.band, c.psi_min, c.psi_max, c.band_stable), (None, None, None, None, None));
    assert!(c.sensitivity.is_empty() && c.top_drags.is_empty());
    assert_eq!(c.total_weight, Some(4.0));
    // Five present, all of weight 0: W = 0, no index either.
    let zero = [(Some(0.5), 0.0); 7];
    assert_eq!(composite(&domains_of(zero)).psi, None);
}

#[test]
fn a_run_whose_weights_underflow_to_zero_is_left_out() {
    use super::composite::composite;
    // Only D1 weighs anything, the smallest subnormal. Base: W = 5e-324, exponent 1 for
    // D1 and 0 for the others, so PSI = 100 * 0.5 = 50. D1 x 0.5 rounds to 0: W = 0,
    // no index, left out. D1 x 1.5 rounds to a positive weight: PSI 50 again.
    let mut scores = [(Some(0.8), 0.0); 7];
    scores[0] = (Some(0.5), f64::from_bits(1));
    let c = composite(&domains_of(scores));
    assert_eq!(c.psi, Some(50.0));
    assert!(!c.sensitivity.iter().any(|r| r.domain == Domain::D1 && r.factor == 0.5));
    assert!(c.sensitivity.iter().any(|r| r.domain == Domain::D1 && r.factor == 1.5 && r.psi == 50.0));
    assert_eq!(c.sensitivity.len(), 13);
}

#[test]
fn custom_and_partial_weights_change_the_index_but_not_the_indicators() {
    let (members, records) = worked_example();
    let base = report(&members, &records, "2026Q3");
    // D4 weighs 3, D7 0, the rest keep 1: W = 1+1+1+3+1+1+0 = 8.
    let mut w = std::collections::BTreeMap::new();
    w.insert("D4".to_string(), 3.0);
    w.insert("D7".to_string(), 0.0);
    let options = ReportOptions::parse(None, &w).unwrap();
    assert_eq!(options.weights, [1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 0.0]);
    let r = compute(&id(PA), p("2026Q3"), &members, &records, &options);
    assert_eq!(r.indicators, base.indicators);
    assert_eq!(r.alerts, base.alerts);
    // PSI = 100 * 0.7083333333333333^(1/8) * 0.9735449735449735^(1/8)
    //   * 0.6950000000000001^(1/8) * 0.5468253968253969^(3/8) * 0.5925925925925926^(1/8)
    //   * 0.5833333333333334^(1/8) * 1.0^0 = 63.69417154807526 (AMBER).
    assert_eq!(r.composite.psi, Some(63.69417154807526));
    assert_eq!(r.composite.band, Some(Band::Amber));
    assert_eq!(r.weights, [1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 0.0]);
    // D7 (weight 0) drags nothing; D4 now leads: (3/8) * -ln(0.5468253968253969)
    // = 0.375 * 0.6036257289318650 = 0.22635964834944938.
    assert_eq!(r.composite.top_drags[0].domain, Domain::D4);
    assert_eq!(r.composite.top_drags[0].term, 0.22635964834944938);
}

#[test]
fn report_options_are_checked_with_their_paths() {
    use std::collections::BTreeMap;
    let parse = |min: Option<i32>, w: &[(&str, f64)]| {
        let map: BTreeMap<String, f64> = w.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        ReportOptions::parse(min, &map).map_err(|v| v.into_iter().map(|v| v.field).collect::<Vec<_>>())
    };
    assert_eq!(parse(None, &[]).unwrap(), ReportOptions::default());
    assert_eq!(parse(Some(1), &[]).unwrap().min_respondents, 1);
    assert_eq!(parse(Some(1000), &[("D3", 1000.0), ("D1", 0.0)]).unwrap().weights[2], 1000.0);
    assert_eq!(parse(Some(0), &[]).unwrap_err(), ["min_respondents"]);
    assert_eq!(parse(Some(1001), &[]).unwrap_err(), ["min_respondents"]);
    assert_eq!(parse(None, &[("D8", 1.0)]).unwrap_err(), ["weights[D8]"]);
    assert_eq!(parse(None, &[("d1", 1.0)]).unwrap_err(), ["weights[d1]"]);
    assert_eq!(parse(None, &[("D2", -1.0)]).unwrap_err(), ["weights[D2]"]);
    assert_eq!(parse(None, &[("D2", 1000.5)]).unwrap_err(), ["weights[D2]"]);
    assert_eq!(parse(None, &[("D2", f64::NAN)]).unwrap_err(), ["weights[D2]"]);
    assert_eq!(parse(None, &[("D2", f64::INFINITY)]).unwrap_err(), ["weights[D2]"]);
    let all_zero: Vec<(&str, f64)> = Domain::ALL.iter().map(|d| (d.id(), 0.0)).collect();
    assert_eq!(parse(None, &all_zero).unwrap_err(), ["weights"]);
    assert_eq!(parse(Some(0), &[("D9", 1.0)]).unwrap_err(), ["min_respondents", "weights[D9]"]);
}

#[test]
fn with_no_members_everything_is_missing_but_the_principles_alert() {
    // Everyone left before the end of the period.
    let members = vec![member("nhs-a", Role::Lead, "2020-01-01", Some("2026-06-30"))];
    let records = vec![
        wr("nhs-a", "2026Q3", (10, 10, 1, 0, 0), None),
        budget("nhs-a", "2026Q3", 5, 5),
        event("nhs-a", "e1", "2026-08-01"),
    ];
    let r = report(&members, &records, "2026Q3");
    assert!(r.members.is_empty());
    for i in &r.indicators {
        assert_eq!(i.missing, Some(MissingReason::NoMembers), "{}", i.id);
        assert_eq!((i.value, i.score, i.records_used), (None, None, 0), "{}", i.id);
    }
    assert!(r.domains.iter().all(|d| d.score.is_none() && d.missing() == Some(MissingReason::NoData)));
    assert_eq!(r.composite.psi, None);
    // No V: the alert fires even with no members (its input is V, not an indicator).
    let alerts: Vec<AlertCode> = r.alerts.iter().map(|a| a.code).collect();
    assert_eq!(alerts, [AlertCode::NoSharedPrinciples]);
    assert!(r.coverage.iter().all(|&(_, n)| n == 0));

    // With an adoption on record (it counts whoever reported it) the alert is silent.
    let mut with_v = records.clone();
    with_v.push(adoption(1, "2025-01-01", "nhs-a"));
    assert!(report(&members, &with_v, "2026Q3").alerts.is_empty());
}

#[test]
fn one_member_has_no_network_and_no_interfaces_between_members() {
    let members = vec![member("nhs-a", Role::Lead, "2020-01-01", None)];
    let records = vec![rating("2026Q3", "nhs-a", "la-b", [4, 4, 4], [4, 4, 4])];
    let r = report(&members, &records, "2026Q3");
    for i in [
        "network_trust",
        "network_value",
        "network_density",
        "reciprocity",
        "rating_asymmetry",
        "trust_received",
    ] {
        assert_eq!(missing(&r, i), Some(MissingReason::NoMembers), "{i}");
    }
    assert_eq!(input(&r, "network_density", "possible_ties"), InputValue::Int(0));
    // k = 1: I = 0 possible interfaces, which scores 1 (I <= 1); the share of I = 0 is
    // missing.
    assert_eq!(value(&r, "possible_interfaces"), Some(0.0));
    assert_eq!(score_of(&r, "possible_interfaces"), Some(1.0));
    assert_eq!(missing(&r, "contractor_interface_share"), Some(MissingReason::NoData));
    // Nothing adopted: coverage is 0, present, and the alert fires.
    assert_eq!(value(&r, "vision_endorsement_coverage"), Some(0.0));
    assert_eq!(input(&r, "vision_endorsement_coverage", "adopted_version"), InputValue::Null);
    assert_eq!(used(&r, "vision_endorsement_coverage"), 0);
    assert_eq!(r.alerts[0].code, AlertCode::NoSharedPrinciples);
}

#[test]
fn no_ratings_means_trust_is_missing_not_zero() {
    let members = vec![
        member("nhs-a", Role::Lead, "2020-01-01", None),
        member("la-b", Role::Member, "2020-01-01", None),
    ];
    let r = report(&members, &[], "2026Q3");
    for i in ["network_trust", "network_density", "reciprocity", "trust_received"] {
        assert_eq!(missing(&r, i), Some(MissingReason::NoData), "{i}");
        assert_eq!(value(&r, i), None);
    }
    assert_eq!(domain(&r, Domain::D5), None);
}

#[test]
fn overlapping_returns_keep_the_longest_period_type() {
    let members =
        vec![member("a1", Role::Lead, "2020-01-01", None), member("a2", Role::Member, "2020-01-01", None)];
    let records = vec![
        // a1 in 2026: 2026Q1 overlaps 202601, so only the quarter is kept, and 202605
        // goes too although it overlaps nothing.
        wr("a1", "2026Q1", (100, 100, 10, 0, 0), None),
        wr("a1", "202601", (100, 99, 3, 5, 0), None),
        wr("a1", "202605", (98, 97, 2, 7, 0), None),
        // a2: two months that do not overlap, both kept.
        wr("a2", "202601", (50, 50, 1, 0, 0), None),
        wr("a2", "202605", (50, 48, 2, 4, 4), None),
    ];
    let r = report(&members, &records, "2026");
    // a1: L 10 over 3 months: 12 * 10 / 3 = 40; a2: L 3 over 2 months: 12 * 3 / 2 = 18.
    // N = 40 + 18 = 58; D = (100 + 100 + 50 + 48) / 2 = 149; 58 / 149.
    assert_eq!(input(&r, "leaver_rate_annualised", "annualised_leavers"), InputValue::Float(58.0));
    assert_eq!(input(&r, "leaver_rate_annualised", "average_headcount"), InputValue::Float(149.0));
    assert_eq!(input(&r, "leaver_rate_annualised", "months"), InputValue::Int(5));
    assert_eq!(value(&r, "leaver_rate_annualised"), Some(0.38926174496644295));
    // Beyond the worst goalpost 0.30: score 0.
    assert_eq!(score_of(&r, "leaver_rate_annualised").map(f64::to_bits), Some(0.0f64.to_bits()));
    assert_eq!(used(&r, "leaver_rate_annualised"), 3);
    // Short-term staff from each agency's latest kept return: a1 2026Q1 has 0, a2
    // 202605 has 8; 8 / (100 + 48).
    assert_eq!(input(&r, "short_term_share", "fixed_term_and_agency_staff"), InputValue::Int(8));
    assert_eq!(input(&r, "short_term_share", "headcount_end"), InputValue::Int(148));
    // No stability fields at all: missing.
    assert_eq!(missing(&r, "stability_index"), Some(MissingReason::NoData));
    // A quarterly report sees a1's quarter, month and nothing of May.
    let q1 = report(&members, &records, "2026Q1");
    assert_eq!(used(&q1, "leaver_rate_annualised"), 2, "a1's 2026Q1 and a2's 202601");
}

#[test]
fn budgets_follow_the_overlap_rule_and_sum_exactly_past_int64() {
    let members =
        vec![member("a1", Role::Lead, "2020-01-01", None), member("a2", Role::Member, "2020-01-01", None)];
    const MAX: i64 = i64::MAX;
    let records =
        vec![budget("a1", "2026Q3", MAX, 0), budget("a1", "202607", 5, 5), budget("a2", "2026Q3", MAX, MAX)];
    let r = report(&members, &records, "2026Q3");
    // Pooled 2 * MAX, aligned MAX, each exact; 2 MAX / 3 MAX rounds to 2/3 in f64.
    let max = i128::from(MAX);
    assert_eq!(input(&r, "pooled_budget_share", "pooled_pence"), InputValue::Int(2 * max));
    assert_eq!(input(&r, "pooled_budget_share", "aligned_pence"), InputValue::Int(max));
    assert_eq!(value(&r, "pooled_budget_share"), Some(0.6666666666666666));
    assert_eq!(used(&r, "pooled_budget_share"), 2);
}

#[test]
fn teams_and_ratings_take_their_latest_period() {
    use Employment::*;
    let members =
        vec![member("a1", Role::Lead, "2020-01-01", None), member("a2", Role::Member, "2020-01-01", None)];
    let records = vec![
        // The month ending with the quarter wins over the quarter (later start).
        team("t1", "2026Q3", "a1", &[("a1", Permanent, 10)]),
        team("t1", "202609", "a1", &[("a1", Permanent, 3), ("a2", AgencyStaff, 1)]),
        // The quarter beats its first month (later end).
        team("t2", "202607", "a2", &[("a1", Permanent, 1), ("a2", Permanent, 1)]),
        team("t2", "2026Q3", "a2", &[("a2", FixedTerm, 4)]),
        // A year and its last month end together: the month wins in a 2026 report.
        rating("2026", "a1", "a2", [1, 1, 1], [1, 1, 1]),
        rating("202612", "a1", "a2", [4, 4, 4], [2, 2, 2]),
    ];
    let r = report(&members, &records, "2026Q3");
    // t1 (202609): h = (3, 1), H 4, S 10, term (16 - 10) / 4 = 1.5; t2 (2026Q3): one
    // employer, term 0. Heterogeneity 1.5 / 8 = 0.1875. Contracted (1 + 4) / 8 = 0.625.
    assert_eq!(value(&r, "team_employer_heterogeneity"), Some(0.1875));
    assert_eq!(value(&r, "team_contracted_share"), Some(0.625));
    assert_eq!(input(&r, "team_contracted_share", "headcount"), InputValue::Int(8));
    let year = report(&members, &records, "2026");
    // One tie, from 202612: s = 12, trust 12 / 3 = 4.0; a1 -> a2 only, so 1 of 2
    // possible ties and no mutual pair.
    assert_eq!(value(&year, "network_trust"), Some(4.0));
    assert_eq!(value(&year, "network_density"), Some(0.5));
    assert_eq!(value(&year, "reciprocity"), Some(0.0));
    assert_eq!(missing(&year, "rating_asymmetry"), Some(MissingReason::NoData));
    assert_eq!(used(&year, "rating_asymmetry"), 0);
}

#[test]
fn min_respondents_sets_the_suppression_threshold() {
    let (members, records) = worked_example();
    let options = ReportOptions { min_respondents: 3, ..ReportOptions::default() };
    let r = compute(&id(PA), p("2026Q3"), &members, &records, &options);
    // Shared values now shows its 3 answers 4, 5, 2: 11 / 3 = 3.6666666666666665.
    assert_eq!(value(&r, "survey_shared_values"), Some(3.6666666666666665));
    assert_eq!(input(&r, "survey_shared_values", "mean"), InputValue::Float(3.6666666666666665));
    // Motivation 3, 4, 5, 2: 14 / 4 = 3.5; no survey is suppressed, no alert.
    assert_eq!(value(&r, "survey_motivation"), Some(3.5));
    assert!(!r.alerts.iter().any(|a| a.code == AlertCode::LowSurveyResponse));
    assert_eq!(r.min_respondents, 3);
}

#[test]
fn pooling_without_a_shared_vision_raises_its_alert() {
    let members =
        vec![member("a1", Role::Lead, "2020-01-01", None), member("a2", Role::Member, "2020-01-01", None)];
    let records = vec![
        adoption(1, "2025-01-01", "a1"),
        endorsement(1, "a1", "2025-01-02"),
        budget("a1", "2026Q3", 1, 9),
        event("a1", "e1", "2026-01-01"),
        event("a2", "e2", "2025-01-01"),
    ];
    // Coverage 1 / 2 = 0.5 is not below 0.5: no alert.
    let r = report(&members, &records, "2026Q3");
    assert_eq!(value(&r, "vision_endorsement_coverage"), Some(0.5));
    assert!(!r.alerts.iter().any(|a| a.code == AlertCode::PooledWithoutVision));
    // Events: one in each window, so acceleration 0 and no alert.
    assert_eq!(value(&r, "restructuring_acceleration"), Some(0.0));
    assert!(r.alerts.is_empty());
    // A third member who has not endorsed: 1 / 3 < 0.5 with pooling > 0.
    let mut more = members.clone();
    more.push(member("a3", Role::Member, "2020-01-01", None));
    let r = report(&more, &records, "2026Q3");
    assert_eq!(r.alerts.iter().map(|a| a.code).collect::<Vec<_>>(), [AlertCode::PooledWithoutVision]);
}

#[test]
fn restructuring_windows_are_twelve_calendar_months_whatever_the_period() {
    let members = vec![member("a1", Role::Lead, "2020-01-01", None)];
    let records = vec![
        event("a1", "e1", "2026-01-01"),
        event("a1", "e2", "2025-12-31"),
        event("a1", "e3", "2025-01-01"),
    ];
    // A month, a quarter and a year ending 2026-12-31 share one window: 2026-01-01 ..
    // 2026-12-31 holds e1; 2025-01-01 .. 2025-12-31 holds e2 and e3.
    for period in ["202612", "2026Q4", "2026"] {
        let r = report(&members, &records, period);
        assert_eq!(value(&r, "restructuring_rate"), Some(1.0), "{period}");
        assert_eq!(value(&r, "restructuring_acceleration"), Some(-1.0), "{period}");
        assert_eq!(
            input(&r, "restructuring_rate", "window_first_day"),
            InputValue::Date("2026-01-01".into())
        );
    }
    // The financial year 2025April ends 2026-03-31: window 2025-04-01 .. 2026-03-31.
    let r = report(&members, &records, "2025April");
    assert_eq!(
        input(&r, "restructuring_acceleration", "previous_window_first_day"),
        InputValue::Date("2024-04-01".into())
    );
    assert_eq!(value(&r, "restructuring_rate"), Some(2.0), "e1 and e2");
    // A window that reaches back before 1900 is still written out.
    let early = report(&members, &records, "190001");
    assert_eq!(
        input(&early, "restructuring_acceleration", "previous_window_first_day"),
        InputValue::Date("1898-02-01".into())
    );
}

// ---------------------------------------------------------------------------------
// Properties

const AGENCIES: [&str; 5] = ["a0", "a1", "a2", "a3", "a4"];
const PERIODS: [&str; 8] = ["2026", "2026Q3", "2026Q2", "202607", "202608", "202609", "202606", "2026April"];

fn arb_record() -> impl Strategy<Value = Record> {
    let agency = prop::sample::select(AGENCIES.to_vec());
    let period = prop::sample::select(PERIODS.to_vec());
    let day = (1u8..=28, 1u8..=12, 2024u16..=2027).prop_map(|(d, m, y)| Date::from_ymd(y, m, d).unwrap());
    prop_oneof![
        (
            agency.clone(),
            period.clone(),
            0i64..500,
            0i64..500,
            0i64..50,
            0i64..50,
            prop::option::of((0i64..100, 100i64..200))
        )
            .prop_map(|(a, per, hs, he, l, t, st)| wr(a, per, (hs, he, l.min(hs), t.min(he), 0), st)),
        (agency.clone(), agency.clone(), day.clone(), 0i64..400).prop_map(|(c, pr, start, len)| {
            let end = Date::from_ymd(start.year() + (len / 200) as u16, start.month(), start.day()).unwrap();
            contract(&format!("c-{c}-{pr}-{}", start.to_days()), c, pr, &start.to_string(), &end.to_string())
        }),
        (
            agency.clone(),
            period.clone(),
            0u8..3,
            prop::collection::vec((agency.clone(), 0usize..3, 1i64..30), 1..4)
        )
            .prop_map(|(a, per, t, entries)| {
                let mut seen = std::collections::BTreeSet::new();
                let kinds = [Employment::Permanent, Employment::FixedTerm, Employment::AgencyStaff];
                let entries: Vec<(&str, Employment, i64)> = entries
                    .into_iter()
                    .filter(|(e, k, _)| seen.insert((*e, *k)))
                    .map(|(e, k, h)| (e, kinds[k], h))
                    .collect();
                team(&format!("t{t}"), per, a, &entries)
            }),
        (agency.clone(), period.clone(), 0u32..1000, prop::array::uniform5(0u8..=5)).prop_map(
            |(a, per, n, mut items)| {
                if items.iter().all(|&i| i == 0) {
                    items[2] = 3;
                }
                survey(&format!("r{n}"), per, a, items)
            }
        ),
        (
            agency.clone(),
            agency.clone(),
            period.clone(),
            prop::array::uniform3(1u8..=4),
            prop::array::uniform3(1u8..=4)
        )
            .prop_filter("rater != ratee", |(a, b, ..)| a != b)
            .prop_map(|(a, b, per, t, v)| rating(per, a, b, t, v)),
        (1i64..4, day.clone(), agency.clone()).prop_map(|(v, date, a)| adoption(v, &date.to_string(), a)),
        (1i64..4, agency.clone(), day.clone()).prop_map(|(v, a, date)| endorsement(v, a, &date.to_string())),
        (agency.clone(), 0u32..1000, day).prop_map(|(a, n, date)| event(
            a,
            &format!("e{n}"),
            &date.to_string()
        )),
        (agency, period, 0i64..1_000_000, 0i64..1_000_000)
            .prop_map(|(a, per, pooled, aligned)| budget(a, per, pooled, aligned)),
    ]
}

/// Distinct natural keys, as storage holds them.
fn arb_records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(arb_record(), 0..60).prop_map(|records| {
        let mut seen = std::collections::BTreeSet::new();
        records.into_iter().filter(|r| seen.insert(r.key())).collect()
    })
}

fn arb_members() -> impl Strategy<Value = Vec<Membership>> {
    prop::collection::vec((any::<bool>(), 0u8..3), 5).prop_map(|spec| {
        AGENCIES
            .iter()
            .zip(spec)
            .filter(|(_, (joined, _))| *joined)
            .map(|(a, (_, end))| {
                let end = [None, Some("2026-08-31"), Some("2027-01-31")][end as usize];
                member(a, Role::Member, "2020-01-01", end)
            })
            .collect()
    })
}

fn arb_options() -> impl Strategy<Value = ReportOptions> {
    (1u32..8, prop::array::uniform7(prop_oneof![Just(0.0), Just(1.0), 0.0f64..1000.0]))
        .prop_filter("some weight above 0", |(_, w)| w.iter().any(|&x| x > 0.0))
        .prop_map(|(min_respondents, weights)| ReportOptions { min_respondents, weights })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn scores_and_the_index_stay_in_range(members in arb_members(), records in arb_records(), options in arb_options(), period in prop::sample::select(PERIODS.to_vec())) {
        let r = compute(&id(PA), p(period), &members, &records, &options);
        for i in &r.indicators {
            if let Some(s) = i.score {
                prop_assert!((0.0..=1.0).contains(&s) && s.to_bits() != (-0.0f64).to_bits(), "{} scored {s}", i.id);
            }
            prop_assert!(i.value.is_none_or(f64::is_finite), "{} value {:?}", i.id, i.value);
            prop_assert_eq!(i.value.is_none(), i.missing.is_some() || i.id == "trust_received");
        }
        for d in &r.domains {
            prop_assert!(d.score.is_none_or(|s| (0.0..=1.0).contains(&s)));
        }
        if let Some(psi) = r.composite.psi {
            prop_assert!((1.0..=100.0).contains(&psi));
            prop_assert!(r.composite.sensitivity.iter().all(|s| (1.0..=100.0).contains(&s.psi)));
            prop_assert!(r.composite.psi_min.unwrap() <= psi && psi <= r.composite.psi_max.unwrap());
        }
    }

    #[test]
    fn the_order_records_arrive_in_never_changes_a_report(members in arb_members(), records in arb_records(), seed in any::<u64>(), period in prop::sample::select(PERIODS.to_vec())) {
        let mut shuffled = records.clone();
        // Fisher-Yates with a fixed generator: any permutation is reachable.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let options = ReportOptions::default();
        prop_assert_eq!(
            compute(&id(PA), p(period), &members, &records, &options),
            compute(&id(PA), p(period), &members, &shuffled, &options)
        );
    }

    #[test]
    fn a_new_record_from_a_non_member_never_changes_the_report(members in arb_members(), records in arb_records(), extra in arb_record(), period in prop::sample::select(PERIODS.to_vec())) {
        let period = p(period);
        let is_member = |a: &Id| members.iter().any(|m| &m.agency == a && m.terms.covers(period.end()));
        // The methodology's one exception: an adoption counts whoever reported it.
        prop_assume!(!matches!(extra, Record::PrinciplesAdoption(_)));
        prop_assume!(!is_member(extra.reporting_agency()));
        prop_assume!(!records.iter().any(|r| r.key() == extra.key()));
        let options = ReportOptions::default();
        let before = compute(&id(PA), period, &members, &records, &options);
        let mut with = records.clone();
        with.push(extra);
        prop_assert_eq!(before, compute(&id(PA), period, &members, &with, &options));
    }
}
