//! The indicators of methodology section 3, as pure functions of the partnership's
//! memberships and records.
//!
//! Numerics (section 7): integers are exact (i128) until the single conversion to f64
//! the methodology shows; floats are summed left to right from 0.0 in a fixed order
//! (agencies and teams by ascending id, ties by (rater, ratee)); every collection that
//! is iterated is ordered (`BTreeMap`/`BTreeSet`), never a hash map, so the same data
//! gives the same report bit for bit.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ReportOptions,
    composite::{alerts, composite, domain_results},
    report::{AgencyTrust, Domain, Goalposts, Indicator, InputValue, MissingReason, Report},
};
use crate::domain::{
    Date, Id, Period,
    records::{
        BudgetContribution, Delivery, Employment, PrinciplesAdoption, PrinciplesEndorsement, Record,
        RecordKind, RelationshipRating, RestructuringEvent, ServiceContract, SurveyItems, SurveyResponse,
        TeamComposition, WorkforceReturn,
    },
    registry::Membership,
};

/// `score = min(max((value − worst) / (best − worst), 0), 1)`, with −0 reported as +0.
pub fn score(value: f64, g: Goalposts) -> f64 {
    // The same as min(max(x, 0), 1) for every value that is not NaN, and values never are.
    let s = ((value - g.worst) / (g.best - g.worst)).clamp(0.0, 1.0);
    if s == 0.0 { 0.0 } else { s }
}

/// `f64(a) / f64(b)`: each exact integer rounded once to the nearest f64, then one
/// IEEE division.
fn ratio(a: i128, b: i128) -> f64 {
    a as f64 / b as f64
}

const fn gp(worst: f64, best: f64) -> Option<Goalposts> {
    Some(Goalposts { worst, best })
}

/// The records of one report, sorted out by kind, after the member filter (3.1.1) and
/// the "counts for P" rule (3.1.2) of each indicator.
struct Selected<'a> {
    period: Period,
    members: BTreeSet<&'a Id>,
    /// X's adoptions dated on or before end(P), whoever reported them.
    adoptions: Vec<&'a PrinciplesAdoption>,
    /// Members' endorsements of X dated on or before end(P).
    endorsements: Vec<&'a PrinciplesEndorsement>,
    /// X's contracts overlapping P commissioned by a member.
    contracts: Vec<&'a ServiceContract>,
    teams: Vec<&'a TeamComposition>,
    surveys: Vec<&'a SurveyResponse>,
    /// Ratings within P whose rater and ratee are both members.
    ratings: Vec<&'a RelationshipRating>,
    returns: Vec<&'a WorkforceReturn>,
    budgets: Vec<&'a BudgetContribution>,
    /// Members' restructuring events, any date.
    events: Vec<&'a RestructuringEvent>,
    /// Coverage (section 6): members reporting each kind, before any de-duplication.
    coverage: BTreeMap<RecordKind, BTreeSet<&'a Id>>,
}

impl<'a> Selected<'a> {
    fn new(partnership: &Id, period: Period, members: BTreeSet<&'a Id>, records: &'a [Record]) -> Self {
        let (start, end) = (period.start(), period.end());
        let mut s = Selected {
            period,
            members,
            adoptions: Vec::new(),
            endorsements: Vec::new(),
            contracts: Vec::new(),
            teams: Vec::new(),
            surveys: Vec::new(),
            ratings: Vec::new(),
            returns: Vec::new(),
            budgets: Vec::new(),
            events: Vec::new(),
            coverage: BTreeMap::new(),
        };
        for record in records {
            // X's records only; restructuring events belong to no partnership.
            if record.partnership().is_some_and(|p| p != partnership) {
                continue;
            }
            let reporter = record.reporting_agency();
            let member = s.members.contains(reporter);
            let counts_for_p = match record {
                Record::ServiceContract(c) => c.start_date <= end && c.end_date >= start,
                Record::PrinciplesAdoption(a) => in_range(a.adoption_date, start, end),
                Record::PrinciplesEndorsement(e) => in_range(e.endorsement_date, start, end),
                Record::RestructuringEvent(e) => in_range(e.date, start, end),
                other => other.period().is_some_and(|r| r.is_within(period)),
            };
            if member && counts_for_p {
                s.coverage.entry(record.kind()).or_default().insert(reporter);
            }
            match record {
                // The exception of 3.1.1: adoptions count whoever reported them.
                Record::PrinciplesAdoption(a) if a.adoption_date <= end => s.adoptions.push(a),
                _ if !member => {}
                Record::PrinciplesEndorsement(e) if e.endorsement_date <= end => s.endorsements.push(e),
                Record::RestructuringEvent(e) => s.events.push(e),
                Record::ServiceContract(c) if counts_for_p => s.contracts.push(c),
                Record::TeamComposition(t) if counts_for_p => s.teams.push(t),
                Record::SurveyResponse(r) if counts_for_p => s.surveys.push(r),
                Record::RelationshipRating(r) if counts_for_p && s.members.contains(&r.ratee) => {
                    s.ratings.push(r)
                }
                Record::WorkforceReturn(w) if counts_for_p => s.returns.push(w),
                Record::BudgetContribution(b) if counts_for_p => s.budgets.push(b),
                _ => {}
            }
        }
        s
    }

    fn n(&self) -> i128 {
        self.members.len() as i128
    }
}

fn in_range(d: Date, start: Date, end: Date) -> bool {
    start <= d && d <= end
}

/// The overlap rule (3.1.3), per agency: if any two of an agency's records within P
/// overlap in time, keep only those of the longest period type among its own.
fn overlap_rule<'a, T>(
    records: &[&'a T],
    agency: impl Fn(&'a T) -> &'a Id,
    period: impl Fn(&T) -> Period,
) -> BTreeMap<&'a Id, Vec<&'a T>> {
    let mut by_agency: BTreeMap<&'a Id, Vec<&'a T>> = BTreeMap::new();
    for &r in records {
        by_agency.entry(agency(r)).or_default().push(r);
    }
    for kept in by_agency.values_mut() {
        kept.sort_by_key(|r| (period(r).start(), period(r).end()));
        // Sorted by start, some two overlap exactly when one starts on or before the
        // latest end seen so far.
        let mut overlap = false;
        let mut latest_end: Option<Date> = None;
        for r in kept.iter() {
            let p = period(r);
            if latest_end.is_some_and(|e| p.start() <= e) {
                overlap = true;
            }
            latest_end = Some(latest_end.map_or(p.end(), |e| e.max(p.end())));
        }
        if overlap {
            let longest = kept.iter().map(|r| period(r).months()).max().unwrap_or(0);
            kept.retain(|r| period(r).months() == longest);
        }
    }
    by_agency
}

/// An indicator under construction.
struct Ind {
    inner: Indicator,
}

impl Ind {
    fn new(id: &'static str, domain: Domain, goalposts: Option<Goalposts>) -> Self {
        Ind {
            inner: Indicator {
                id,
                domain,
                goalposts,
                value: None,
                score: None,
                inputs: Vec::new(),
                records_used: 0,
                missing: None,
                by_agency: Vec::new(),
                explanation: String::new(),
            },
        }
    }

    fn input(mut self, name: &'static str, v: InputValue) -> Self {
        self.inner.inputs.push((name, v));
        self
    }

    fn int(self, name: &'static str, v: i128) -> Self {
        self.input(name, InputValue::Int(v))
    }

    fn float(self, name: &'static str, v: f64) -> Self {
        self.input(name, InputValue::Float(v))
    }

    fn used(mut self, n: usize) -> Self {
        self.inner.records_used = n as u64;
        self
    }

    fn value(mut self, v: f64, explanation: String) -> Indicator {
        self.inner.value = Some(v);
        self.inner.score = self.inner.goalposts.map(|g| score(v, g));
        self.inner.explanation = explanation;
        self.inner
    }

    fn missing(mut self, reason: MissingReason, explanation: &str) -> Indicator {
        self.inner.missing = Some(reason);
        self.inner.explanation = explanation.to_string();
        self.inner
    }

    /// The general rule of 3.10: with no members every indicator is missing and uses
    /// no records.
    fn no_members(mut self) -> Indicator {
        self.inner.records_used = 0;
        self.missing(MissingReason::NoMembers, "the partnership has no members on the last day of the period")
    }
}

/// Computes the report of one partnership for one period from its memberships (as
/// they stand) and the records that may apply: the partnership's own records and the
/// restructuring events of its member agencies. Extra records are harmless: each
/// indicator selects exactly what the methodology says.
pub fn compute(
    partnership: &Id,
    period: Period,
    memberships: &[Membership],
    records: &[Record],
    options: &ReportOptions,
) -> Report {
    let end = period.end();
    let members: BTreeSet<&Id> = memberships
        .iter()
        .filter(|m| &m.partnership == partnership && m.terms.covers(end))
        .map(|m| &m.agency)
        .collect();
    let s = Selected::new(partnership, period, members, records);

    let mut indicators = Vec::with_capacity(22);
    indicators.push(vision_endorsement_coverage(&s));
    indicators.push(survey(
        &s,
        options,
        "survey_shared_vision",
        Domain::D1,
        |i| i.shared_vision,
        "shared vision",
    ));
    indicators.extend(interfaces(&s));
    indicators.push(team_employer_heterogeneity(&s));
    indicators.push(team_contracted_share(&s));
    indicators.push(survey(
        &s,
        options,
        "survey_shared_values",
        Domain::D3,
        |i| i.shared_values,
        "shared values",
    ));
    indicators.extend(workforce(&s));
    indicators.extend(network(&s));
    indicators.extend(restructuring(&s));
    indicators.push(survey(&s, options, "survey_morale", Domain::D6, |i| i.morale, "morale"));
    indicators.push(survey(&s, options, "survey_loyalty", Domain::D6, |i| i.loyalty, "loyalty"));
    indicators.push(survey(&s, options, "survey_motivation", Domain::D6, |i| i.motivation, "motivation"));
    indicators.push(pooled_budget_share(&s));
    debug_assert_eq!(indicators.len(), 22);

    let domains = domain_results(&indicators, &options.weights);
    let composite = composite(&domains);
    let adopted = s.adoptions.iter().map(|a| a.version).max();
    let alerts = alerts(&indicators, adopted);
    let coverage =
        RecordKind::ALL.into_iter().map(|k| (k, s.coverage.get(&k).map_or(0, |a| a.len() as u64))).collect();
    Report {
        partnership: partnership.clone(),
        period,
        members: s.members.iter().map(|&a| a.clone()).collect(),
        min_respondents: options.min_respondents,
        weights: options.weights,
        indicators,
        domains,
        composite,
        alerts,
        coverage,
    }
}

// ---------------------------------------------------------------------------------
// D1 shared vision

fn vision_endorsement_coverage(s: &Selected) -> Indicator {
    let v = s.adoptions.iter().map(|a| a.version).max();
    let endorsing: BTreeSet<&Id> = match v {
        Some(v) => s.endorsements.iter().filter(|e| e.version == v).map(|e| &e.agency).collect(),
        None => BTreeSet::new(),
    };
    let e = endorsing.len() as i128;
    let n = s.n();
    let ind = Ind::new("vision_endorsement_coverage", Domain::D1, gp(0.0, 1.0))
        .input("adopted_version", v.map_or(InputValue::Null, |v| InputValue::Int(v.into())))
        .int("endorsing_members", e)
        .int("members", n)
        .used(if v.is_some() { endorsing.len() + 1 } else { 0 });
    if n == 0 {
        return ind.no_members();
    }
    match v {
        None => ind.value(0.0, format!("no principles adopted by {}: nothing to endorse", s.period.end())),
        Some(v) => ind.value(
            ratio(e, n),
            format!("{e} of {n} members endorsed version {v} of the principles by {}", s.period.end()),
        ),
    }
}

// ---------------------------------------------------------------------------------
// Surveys (3.9)

fn survey(
    s: &Selected,
    options: &ReportOptions,
    id: &'static str,
    domain: Domain,
    item: fn(&SurveyItems) -> Option<u8>,
    name: &str,
) -> Indicator {
    let answers: Vec<u8> = s.surveys.iter().filter_map(|r| item(&r.items)).collect();
    let count = answers.len() as i128;
    let ind = Ind::new(id, domain, gp(1.0, 5.0)).int("answers", count).used(answers.len());
    if s.n() == 0 {
        return ind.no_members();
    }
    if count == 0 {
        return ind.missing(MissingReason::NoData, &format!("no answers on {name}"));
    }
    if count < i128::from(options.min_respondents) {
        return ind.missing(
            MissingReason::SuppressedSmallNumber,
            &format!(
                "{count} answers on {name}, fewer than the {} needed to show it",
                options.min_respondents
            ),
        );
    }
    let sum: i128 = answers.iter().map(|&a| i128::from(a)).sum();
    let mean = ratio(sum, count);
    ind.float("mean", mean).value(mean, format!("mean of {count} answers on {name} (1 to 5)"))
}

// ---------------------------------------------------------------------------------
// D2 interfaces

fn interfaces(s: &Selected) -> [Indicator; 2] {
    let outsourced: Vec<&&ServiceContract> =
        s.contracts.iter().filter(|c| c.delivery == Delivery::Outsourced).collect();
    let providers: BTreeSet<&Id> = outsourced.iter().map(|c| &c.provider).collect();
    let q = providers.iter().filter(|p| !s.members.contains(*p)).count() as i128;
    let n = s.n();
    let k = n + q;
    let i = k * (k - 1) / 2;
    let member_pairs = n * (n - 1) / 2;
    let c = outsourced.len();
    let possible = Ind::new("possible_interfaces", Domain::D2, gp(190.0, 1.0))
        .int("organisations_involved", k)
        .int("members", n)
        .int("non_member_providers", q)
        .int("possible_interfaces", i)
        .int("outsourced_contracts", c as i128)
        .used(c);
    let share = Ind::new("contractor_interface_share", Domain::D2, None)
        .int("interfaces_with_non_member_provider", i - member_pairs)
        .int("possible_interfaces", i)
        .used(c);
    if n == 0 {
        return [possible.no_members(), share.no_members()];
    }
    let possible = possible.value(
        i as f64,
        format!("{k} organisations ({n} members, {q} outside providers of {c} outsourced contracts): {i} possible interfaces"),
    );
    let share = if i == 0 {
        share.missing(MissingReason::NoData, "no interfaces at all")
    } else {
        share.value(
            ratio(i - member_pairs, i),
            format!("{} of {i} interfaces involve an outside provider", i - member_pairs),
        )
    };
    [possible, share]
}

// ---------------------------------------------------------------------------------
// D3 shared values and teams

/// Per team_id, the composition with the latest period within P.
fn latest_teams<'a>(s: &Selected<'a>) -> BTreeMap<&'a Id, &'a TeamComposition> {
    let mut teams: BTreeMap<&Id, &TeamComposition> = BTreeMap::new();
    for &t in &s.teams {
        match teams.get(&t.team_id) {
            Some(current) if current.period.latest_key() >= t.period.latest_key() => {}
            _ => {
                teams.insert(&t.team_id, t);
            }
        }
    }
    teams
}

fn team_employer_heterogeneity(s: &Selected) -> Indicator {
    let teams = latest_teams(s);
    let mut terms = 0.0;
    let mut total: i128 = 0;
    for t in teams.values() {
        let mut by_employer: BTreeMap<&Id, i128> = BTreeMap::new();
        for e in &t.entries {
            *by_employer.entry(&e.employer).or_default() += i128::from(e.headcount);
        }
        let h: i128 = by_employer.values().sum();
        let squares: i128 = by_employer.values().map(|x| x * x).sum();
        terms += (h * h - squares) as f64 / h as f64;
        total += h;
    }
    let ind = Ind::new("team_employer_heterogeneity", Domain::D3, gp(1.0, 0.0))
        .int("teams", teams.len() as i128)
        .int("headcount", total)
        .used(teams.len());
    if s.n() == 0 {
        return ind.no_members();
    }
    if teams.is_empty() {
        return ind.missing(MissingReason::NoData, "no team compositions");
    }
    ind.value(
        terms / total as f64,
        format!("headcount-weighted Blau index of employers over {} teams of {total} people", teams.len()),
    )
}

fn team_contracted_share(s: &Selected) -> Indicator {
    let teams = latest_teams(s);
    let mut contracted: i128 = 0;
    let mut total: i128 = 0;
    for t in teams.values() {
        for e in &t.entries {
            total += i128::from(e.headcount);
            if matches!(e.employment, Employment::FixedTerm | Employment::AgencyStaff) {
                contracted += i128::from(e.headcount);
            }
        }
    }
    let ind = Ind::new("team_contracted_share", Domain::D3, gp(1.0, 0.0))
        .int("teams", teams.len() as i128)
        .int("fixed_term_and_agency_staff", contracted)
        .int("headcount", total)
        .used(teams.len());
    if s.n() == 0 {
        return ind.no_members();
    }
    if teams.is_empty() {
        return ind.missing(MissingReason::NoData, "no team compositions");
    }
    ind.value(
        ratio(contracted, total),
        format!("{contracted} of {total} team members on fixed-term or agency contracts"),
    )
}

// ---------------------------------------------------------------------------------
// D4 workforce stability

fn workforce(s: &Selected) -> [Indicator; 3] {
    let kept = overlap_rule(&s.returns, |w| &w.agency, |w| w.period);
    let mut kept_returns = 0usize;
    let mut leavers: i128 = 0;
    let mut months: i128 = 0;
    let mut annualised = 0.0;
    let mut heads: i128 = 0;
    let mut head_end: i128 = 0;
    let mut temporary: i128 = 0;
    let (mut stable_agencies, mut over, mut ago) = (0usize, 0i128, 0i128);
    for returns in kept.values() {
        // Sorted by period start by the overlap rule.
        let (Some(first), Some(last)) = (returns.first(), returns.last()) else { continue };
        kept_returns += returns.len();
        let l: i128 = returns.iter().map(|r| i128::from(r.leavers)).sum();
        let m: i128 = returns.iter().map(|r| i128::from(r.period.months())).sum();
        leavers += l;
        months += m;
        annualised += ratio(12 * l, m);
        heads += i128::from(first.headcount_start) + i128::from(last.headcount_end);
        head_end += i128::from(last.headcount_end);
        temporary += i128::from(last.fixed_term) + i128::from(last.agency_staff);
        if let Some(st) = last.stability {
            stable_agencies += 1;
            over += i128::from(st.staff_over_one_year_service);
            ago += i128::from(st.headcount_one_year_ago);
        }
    }
    let agencies = kept.len() as i128;
    let average = heads as f64 / 2.0;
    let leaver = Ind::new("leaver_rate_annualised", Domain::D4, gp(0.30, 0.0))
        .int("agencies", agencies)
        .int("leavers", leavers)
        .int("months", months)
        .float("annualised_leavers", annualised)
        .float("average_headcount", average)
        .used(kept_returns);
    let short = Ind::new("short_term_share", Domain::D4, gp(0.5, 0.0))
        .int("agencies", agencies)
        .int("fixed_term_and_agency_staff", temporary)
        .int("headcount_end", head_end)
        .used(kept.len());
    let stability = Ind::new("stability_index", Domain::D4, gp(0.6, 1.0))
        .int("agencies", stable_agencies as i128)
        .int("staff_over_one_year_service", over)
        .int("headcount_one_year_ago", ago)
        .used(stable_agencies);
    if s.n() == 0 {
        return [leaver.no_members(), short.no_members(), stability.no_members()];
    }
    let leaver = if kept.is_empty() || heads == 0 {
        leaver.missing(MissingReason::NoData, "no workforce return with any headcount")
    } else {
        leaver.value(
            annualised / average,
            format!(
                "{annualised} annualised leavers over an average headcount of {average} ({agencies} agencies)"
            ),
        )
    };
    let short = if head_end == 0 {
        short.missing(MissingReason::NoData, "no headcount at the end of the period")
    } else {
        short.value(
            ratio(temporary, head_end),
            format!(
                "{temporary} of {head_end} staff on fixed-term or agency contracts at the end of the period"
            ),
        )
    };
    let stability = if ago == 0 {
        stability.missing(MissingReason::NoData, "no headcount one year ago reported")
    } else {
        stability.value(
            ratio(over, ago),
            format!("{over} of {ago} staff of a year ago still in post ({stable_agencies} agencies)"),
        )
    };
    [leaver, short, stability]
}

// ---------------------------------------------------------------------------------
// D5 trust and reciprocity

fn network(s: &Selected) -> [Indicator; 6] {
    // Per (rater, ratee), the rating with the latest period.
    let mut ties: BTreeMap<(&Id, &Id), &RelationshipRating> = BTreeMap::new();
    for &r in &s.ratings {
        match ties.get(&(&r.rater, &r.ratee)) {
            Some(current) if current.period.latest_key() >= r.period.latest_key() => {}
            _ => {
                ties.insert((&r.rater, &r.ratee), r);
            }
        }
    }
    let trust = |r: &RelationshipRating| {
        i128::from(r.reliability) + i128::from(r.mission_support) + i128::from(r.openness)
    };
    let value = |r: &RelationshipRating| {
        i128::from(r.power_influence) + i128::from(r.involvement) + i128::from(r.resource_contribution)
    };
    let t = ties.len() as i128;
    let trust_sum: i128 = ties.values().map(|r| trust(r)).sum();
    let value_sum: i128 = ties.values().map(|r| value(r)).sum();
    let n = s.n();
    let possible_ties = n * (n - 1);
    let mut connected = 0i128;
    let mut mutual = 0i128;
    let mut asymmetry: i128 = 0;
    for (&(a, b), r) in &ties {
        match ties.get(&(b, a)) {
            // Each mutual pair once, from its smaller id.
            Some(back) if a < b => {
                connected += 1;
                mutual += 1;
                asymmetry += (trust(r) - trust(back)).abs();
            }
            Some(_) => {}
            None => connected += 1,
        }
    }
    let mut received: BTreeMap<&Id, (i128, i128)> = BTreeMap::new();
    for (&(_, b), r) in &ties {
        let e = received.entry(b).or_default();
        e.0 += trust(r);
        e.1 += 1;
    }
    let used = ties.len();
    let trust_ind = Ind::new("network_trust", Domain::D5, gp(1.0, 4.0))
        .int("ties", t)
        .int("trust_item_sum", trust_sum)
        .used(used);
    let value_ind = Ind::new("network_value", Domain::D5, None)
        .int("ties", t)
        .int("value_item_sum", value_sum)
        .used(used);
    let density = Ind::new("network_density", Domain::D5, gp(0.0, 1.0))
        .int("ties", t)
        .int("possible_ties", possible_ties)
        .used(used);
    let reciprocity = Ind::new("reciprocity", Domain::D5, gp(0.0, 1.0))
        .int("mutual_pairs", mutual)
        .int("connected_pairs", connected)
        .used(used);
    let asym = Ind::new("rating_asymmetry", Domain::D5, None)
        .int("mutual_pairs", mutual)
        .int("abs_trust_item_sum_diff", asymmetry)
        .used(2 * mutual as usize);
    let mut trust_received =
        Ind::new("trust_received", Domain::D5, None).int("agencies", received.len() as i128).used(used);
    if n == 0 {
        return [trust_ind, value_ind, density, reciprocity, asym, trust_received].map(Ind::no_members);
    }
    if n == 1 {
        const ONE: &str = "a network needs at least two members";
        return [trust_ind, value_ind, density, reciprocity, asym, trust_received]
            .map(|i| i.missing(MissingReason::NoMembers, ONE));
    }
    if t == 0 {
        const NONE: &str = "no relationship ratings between members";
        return [trust_ind, value_ind, density, reciprocity, asym, trust_received]
            .map(|i| i.missing(MissingReason::NoData, NONE));
    }
    trust_received.inner.by_agency = received
        .iter()
        .map(|(&agency, &(sum, ties))| AgencyTrust {
            agency: agency.clone(),
            value: ratio(sum, 3 * ties),
            ties: ties as u64,
        })
        .collect();
    let trust_received = {
        let mut i = trust_received.inner;
        i.explanation = format!("mean trust items received, for each of {} rated agencies", received.len());
        i
    };
    let asym = if mutual == 0 {
        asym.missing(MissingReason::NoData, "no mutual pair of ratings")
    } else {
        asym.value(ratio(asymmetry, 3 * mutual), format!("mean trust gap within {mutual} mutual pairs"))
    };
    [
        trust_ind.value(ratio(trust_sum, 3 * t), format!("mean of the trust items of {t} ties (1 to 4)")),
        value_ind.value(ratio(value_sum, 3 * t), format!("mean of the value items of {t} ties (1 to 4)")),
        density.value(
            ratio(t, possible_ties),
            format!("{t} of {possible_ties} possible ties between {n} members"),
        ),
        reciprocity.value(
            ratio(mutual, connected),
            format!("{mutual} of {connected} connected pairs rate each other"),
        ),
        asym,
        trust_received,
    ]
}

// ---------------------------------------------------------------------------------
// D6 organisational stability

/// A calendar day that may fall before 1900 (a window of a report early in 1900
/// reaches back into 1899), for window bounds only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Day(i32, u8, u8);

impl Day {
    fn of(d: Date) -> Day {
        Day(d.year().into(), d.month(), d.day())
    }

    /// The first day of the month `index` (year * 12 + month - 1).
    fn first_of(index: i32) -> Day {
        Day(index.div_euclid(12), (index.rem_euclid(12) + 1) as u8, 1)
    }

    /// The last day of the month `index`.
    fn last_of(index: i32) -> Day {
        let (y, m) = (index.div_euclid(12), (index.rem_euclid(12) + 1) as u8);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let d = match m {
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 31,
        };
        Day(y, m, d)
    }

    fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.0, self.1, self.2)
    }
}

fn restructuring(s: &Selected) -> [Indicator; 2] {
    let end = s.period.end();
    let month = i32::from(end.year()) * 12 + i32::from(end.month()) - 1;
    let (window_start, window_end) = (Day::first_of(month - 11), Day::of(end));
    let (previous_start, previous_end) = (Day::first_of(month - 23), Day::last_of(month - 12));
    let count = |from: Day, to: Day| {
        s.events.iter().filter(|e| (from..=to).contains(&Day::of(e.date))).count() as i128
    };
    let last = count(window_start, window_end);
    let previous = count(previous_start, previous_end);
    let n = s.n();
    let rate = Ind::new("restructuring_rate", Domain::D6, gp(2.0, 0.0))
        .int("events_last_12_months", last)
        .int("members", n)
        .input("window_first_day", InputValue::Date(window_start.iso()))
        .input("window_last_day", InputValue::Date(window_end.iso()))
        .used(last as usize);
    let acceleration = Ind::new("restructuring_acceleration", Domain::D6, None)
        .int("events_last_12_months", last)
        .int("events_previous_12_months", previous)
        .input("previous_window_first_day", InputValue::Date(previous_start.iso()))
        .input("previous_window_last_day", InputValue::Date(previous_end.iso()))
        .used((last + previous) as usize);
    if n == 0 {
        return [rate.no_members(), acceleration.no_members()];
    }
    [
        rate.value(
            ratio(last, n),
            format!(
                "{last} restructuring events among {n} members from {} to {}",
                window_start.iso(),
                window_end.iso()
            ),
        ),
        acceleration.value(
            (last - previous) as f64,
            format!("{last} events in the last 12 months against {previous} in the 12 before"),
        ),
    ]
}

// ---------------------------------------------------------------------------------
// D7 pooled resources

fn pooled_budget_share(s: &Selected) -> Indicator {
    let kept = overlap_rule(&s.budgets, |b| &b.agency, |b| b.period);
    let contributions: usize = kept.values().map(Vec::len).sum();
    let pooled: i128 = kept.values().flatten().map(|b| i128::from(b.pooled_pence)).sum();
    let aligned: i128 = kept.values().flatten().map(|b| i128::from(b.aligned_pence)).sum();
    let ind = Ind::new("pooled_budget_share", Domain::D7, gp(0.0, 0.5))
        .int("pooled_pence", pooled)
        .int("aligned_pence", aligned)
        .int("agencies", kept.len() as i128)
        .used(contributions);
    if s.n() == 0 {
        return ind.no_members();
    }
    if pooled + aligned == 0 {
        return ind.missing(MissingReason::NoData, "no budget in scope reported");
    }
    ind.value(
        ratio(pooled, pooled + aligned),
        format!("{pooled} of {} pence in scope is pooled ({} agencies)", pooled + aligned, kept.len()),
    )
}
