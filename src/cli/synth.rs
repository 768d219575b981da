//! A deterministic synthetic data set, as an integrator would submit it: agencies,
//! partnerships with different fortunes, and eight quarters of records of all nine
//! kinds. The demo loads a small one; the benchmarks load the same shape at scale.
//!
//! Fortunes follow the essay: a thriving partnership (shared principles, stable
//! staff, pooled budgets), one fragmenting under outsourcing (many providers, agency
//! staff, high turnover), one restructuring (events accelerating, morale falling),
//! and steady ones in between.

use crate::pb::{self, record::Kind};

/// Size of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    pub partnerships: usize,
    /// Members per partnership (the first is the lead).
    pub members: usize,
    /// Survey responses per member per quarter.
    pub responses: usize,
    /// Ratings each member gives per quarter.
    pub ratings: usize,
    /// Teams per partnership.
    pub teams: usize,
    pub seed: u64,
}

impl SynthConfig {
    /// The demo: five partnerships of eight members.
    pub fn demo() -> Self {
        SynthConfig { partnerships: 5, members: 8, responses: 4, ratings: 3, teams: 3, seed: 1998 }
    }

    /// About `records` records in all, by the number of partnerships.
    pub fn scaled(records: usize) -> Self {
        let base = SynthConfig { partnerships: 1, ..SynthConfig::demo() };
        let per = Synth::new(base).records_of(0).len().max(1);
        SynthConfig { partnerships: records.div_ceil(per).max(1), ..base }
    }
}

/// The quarters every data set covers, oldest first.
pub const QUARTERS: [&str; 8] =
    ["2025Q1", "2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3", "2026Q4"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fortune {
    Thriving,
    Fragmenting,
    Restructuring,
    Steady,
}

impl Fortune {
    fn of(index: usize) -> Fortune {
        match index % 5 {
            0 => Fortune::Thriving,
            1 => Fortune::Fragmenting,
            2 => Fortune::Restructuring,
            _ => Fortune::Steady,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fortune::Thriving => "thriving: shared principles, stable staff, pooled budgets",
            Fortune::Fragmenting => "fragmenting under outsourcing: many providers, agency staff, turnover",
            Fortune::Restructuring => "restructuring: reorganisations accelerating, morale falling",
            Fortune::Steady => "steady",
        }
    }
}

/// Named places for the first partnerships, so the demo reads well.
const PLACES: [&str; 5] = ["northvale", "eastmoor", "southbridge", "westfield", "riverside"];
const MEMBER_ROLES: [&str; 8] =
    ["nhs", "council", "community-nhs", "vol-1", "public-health", "vol-2", "housing", "vol-3"];

/// SplitMix64: small, fast and the same on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A 1..=max scale answer around `mean`.
    fn scale(&mut self, mean: f64, max: i32) -> i32 {
        let v = mean + (self.unit() - 0.5) * 2.4;
        (v.round() as i32).clamp(1, max)
    }
}

/// The data set.
#[derive(Debug, Clone)]
pub struct Synth {
    pub config: SynthConfig,
}

impl Synth {
    pub fn new(config: SynthConfig) -> Self {
        Synth { config }
    }

    pub fn partnership_id(&self, p: usize) -> String {
        match PLACES.get(p) {
            Some(place) => place.to_string(),
            None => format!("p-{p:06}"),
        }
    }

    pub fn fortune(&self, p: usize) -> Fortune {
        Fortune::of(p)
    }

    /// The id of member `m` of partnership `p` (member 0 is its lead).
    pub fn member_id(&self, p: usize, m: usize) -> String {
        let role = MEMBER_ROLES.get(m).map(|r| r.to_string()).unwrap_or_else(|| format!("member-{m}"));
        format!("{}-{role}", self.partnership_id(p))
    }

    fn provider_id(&self, p: usize, k: usize) -> String {
        format!("{}-care-ltd-{k}", self.partnership_id(p))
    }

    /// Providers per partnership: contracted, never members.
    const PROVIDERS: usize = 3;

    pub fn agency_requests(&self) -> impl Iterator<Item = pb::CreateAgencyRequest> + '_ {
        (0..self.config.partnerships).flat_map(move |p| {
            let members = (0..self.config.members).map(move |m| {
                let sector = match m % 4 {
                    0 | 2 => pb::Sector::NhsBody,
                    1 => pb::Sector::LocalAuthority,
                    _ => pb::Sector::VoluntaryOrCommunityOrganisation,
                };
                (self.member_id(p, m), sector)
            });
            let providers =
                (0..Self::PROVIDERS).map(move |k| (self.provider_id(p, k), pb::Sector::PrivateProvider));
            members.chain(providers).map(|(id, sector)| pb::CreateAgencyRequest {
                agency: Some(pb::Agency {
                    display_name: id.replace('-', " "),
                    sector: sector as i32,
                    ..Default::default()
                }),
                request_id: format!("synth-agency-{id}"),
                agency_id: id,
            })
        })
    }

    pub fn partnership_requests(&self) -> impl Iterator<Item = pb::CreatePartnershipRequest> + '_ {
        (0..self.config.partnerships).map(move |p| {
            let id = self.partnership_id(p);
            pb::CreatePartnershipRequest {
                partnership: Some(pb::Partnership {
                    display_name: format!("{} health and care partnership", id.replace('-', " ")),
                    purpose: format!("Joined-up care; synthetic, {}", self.fortune(p).describe()),
                    ..Default::default()
                }),
                request_id: format!("synth-partnership-{id}"),
                partnership_id: id,
            }
        })
    }

    pub fn membership_requests(&self) -> impl Iterator<Item = pb::CreateMembershipRequest> + '_ {
        (0..self.config.partnerships).flat_map(move |p| {
            let fortune = self.fortune(p);
            (0..self.config.members).map(move |m| {
                let agency = self.member_id(p, m);
                // The fragmenting partnership lost a member in 2026; one member of
                // each joined late.
                let (start, end) = match (fortune, m) {
                    (_, m) if m + 1 == self.config.members && m > 1 => ("2026-08-15", ""),
                    (Fortune::Fragmenting, 3) => ("2020-01-01", "2026-05-31"),
                    _ => ("2020-01-01", ""),
                };
                pb::CreateMembershipRequest {
                    parent: format!("partnerships/{}", self.partnership_id(p)),
                    membership: Some(pb::Membership {
                        agency: agency.clone(),
                        role: if m == 0 { pb::Role::Lead } else { pb::Role::Member } as i32,
                        start_date: start.into(),
                        end_date: end.into(),
                        ..Default::default()
                    }),
                    request_id: format!("synth-membership-{}-{agency}", self.partnership_id(p)),
                }
            })
        })
    }

    /// Every record, partnership by partnership; valid in this order (each adoption
    /// precedes its endorsements).
    pub fn records(&self) -> impl Iterator<Item = pb::Record> + '_ {
        (0..self.config.partnerships).flat_map(move |p| self.records_of(p))
    }

    /// About how many records the data set holds (partnerships differ a little).
    pub fn estimated_record_count(&self) -> usize {
        self.records_of(0).len() * self.config.partnerships
    }

    /// The records of partnership `p`; the count is the same for every partnership.
    pub fn records_of(&self, p: usize) -> Vec<pb::Record> {
        let c = &self.config;
        let mut rng = Rng(c.seed ^ (p as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let fortune = self.fortune(p);
        let pid = self.partnership_id(p);
        let members: Vec<String> = (0..c.members).map(|m| self.member_id(p, m)).collect();
        let providers: Vec<String> = (0..Self::PROVIDERS).map(|k| self.provider_id(p, k)).collect();
        let mut out = Vec::new();
        let push = |out: &mut Vec<pb::Record>, kind: Kind| out.push(pb::Record { kind: Some(kind) });

        // Shared principles: adopted by the lead; endorsed by many or few.
        let endorsers = match fortune {
            Fortune::Thriving => c.members,
            Fortune::Fragmenting => 2.min(c.members),
            Fortune::Restructuring => c.members / 2,
            Fortune::Steady => (c.members * 3).div_ceil(4),
        };
        let versions: &[(i64, &str)] = match fortune {
            Fortune::Thriving => &[(1, "2025-01-15"), (2, "2026-03-01")],
            _ => &[(1, "2025-02-01")],
        };
        for &(version, date) in versions {
            push(
                &mut out,
                Kind::PrinciplesAdoption(pb::PrinciplesAdoption {
                    partnership: pid.clone(),
                    version,
                    title: format!("Partnership principles v{version}"),
                    adoption_date: date.into(),
                    reporting_agency: members[0].clone(),
                }),
            );
            for agency in members.iter().take(endorsers) {
                let day = 1 + rng.below(27);
                let month = if version == 1 { 3 } else { 4 };
                let year = &date[..4];
                push(
                    &mut out,
                    Kind::PrinciplesEndorsement(pb::PrinciplesEndorsement {
                        partnership: pid.clone(),
                        version,
                        agency: agency.clone(),
                        endorsement_date: format!("{year}-{month:02}-{day:02}"),
                    }),
                );
            }
        }

        // Contracts: the fragmenting partnership outsources to every provider.
        let outsourced = match fortune {
            Fortune::Thriving => 1,
            Fortune::Fragmenting => 4,
            _ => 2,
        };
        for k in 0..4 {
            let commissioner = members[k % c.members].clone();
            let (provider, delivery) = if k < outsourced {
                (providers[k % providers.len()].clone(), pb::Delivery::Outsourced)
            } else {
                (commissioner.clone(), pb::Delivery::InHouse)
            };
            push(
                &mut out,
                Kind::ServiceContract(pb::ServiceContract {
                    partnership: pid.clone(),
                    contract_id: format!("contract-{k}"),
                    service_name: ["Home care", "Reablement", "Community nursing", "Day services"][k].into(),
                    commissioner,
                    provider,
                    delivery: delivery as i32,
                    annual_value_pence: 50_000_000 + rng.below(200_000_000) as i64,
                    start_date: if k % 2 == 0 { "2024-04-01" } else { "2025-07-01" }.into(),
                    end_date: if k == 3 { "2026-03-31" } else { "2028-03-31" }.into(),
                }),
            );
        }

        // Restructuring events: a few per agency, accelerating where restructuring.
        for (m, agency) in members.iter().enumerate() {
            let events = match fortune {
                Fortune::Restructuring => 2 + m % 3,
                Fortune::Fragmenting => 1,
                _ => usize::from(m % 3 == 0),
            };
            for e in 0..events {
                // Restructuring partnerships have their events late; others spread.
                let (year, month) = match fortune {
                    Fortune::Restructuring => (2026, 1 + rng.below(9) as u32),
                    _ => (2024 + (e as u32 % 3), 1 + rng.below(12) as u32),
                };
                push(
                    &mut out,
                    Kind::RestructuringEvent(pb::RestructuringEvent {
                        agency: agency.clone(),
                        event_id: format!("{pid}-ev-{e}"),
                        date: format!("{year}-{month:02}-{:02}", 1 + rng.below(28)),
                        kind: (1 + rng.below(6)) as i32,
                        staff_affected: rng.below(120) as i64,
                    }),
                );
            }
        }

        // Quarter by quarter.
        let (leaver_rate, short_term, survey_mean, trust_mean, pooled_share) = match fortune {
            Fortune::Thriving => (0.02, 0.05, 4.2, 3.6, 0.45),
            Fortune::Fragmenting => (0.07, 0.35, 2.9, 2.3, 0.12),
            Fortune::Restructuring => (0.05, 0.15, 2.4, 2.8, 0.25),
            Fortune::Steady => (0.04, 0.12, 3.4, 3.0, 0.3),
        };
        let mut headcount: Vec<i64> = (0..c.members).map(|_| 40 + rng.below(200) as i64).collect();
        for (q, quarter) in QUARTERS.iter().enumerate() {
            for (m, agency) in members.iter().enumerate() {
                let hs = headcount[m];
                let leavers = ((hs as f64) * leaver_rate * (0.5 + rng.unit())).round() as i64;
                let joiners = ((hs as f64) * leaver_rate * (0.5 + rng.unit())).round() as i64;
                let he = (hs + joiners - leavers).max(1);
                let leavers = hs + joiners - he;
                headcount[m] = he;
                let temporary = ((he as f64) * short_term * (0.5 + rng.unit())).round() as i64;
                let agency_staff = temporary.min(he) / 2;
                let fixed_term = temporary.min(he) - agency_staff;
                let ago = hs.max(1);
                let stable = ((ago as f64) * (1.0 - 3.0 * leaver_rate)).round().clamp(0.0, ago as f64) as i64;
                push(
                    &mut out,
                    Kind::WorkforceReturn(pb::WorkforceReturn {
                        partnership: pid.clone(),
                        agency: agency.clone(),
                        period: quarter.to_string(),
                        headcount_start: hs,
                        headcount_end: he,
                        joiners,
                        leavers,
                        permanent: he - fixed_term - agency_staff,
                        fixed_term,
                        agency_staff,
                        staff_over_one_year_service: Some(stable),
                        headcount_one_year_ago: Some(ago),
                    }),
                );
                let total = 1_000_000 + rng.below(9_000_000) as i64;
                let pooled = ((total as f64) * pooled_share * (0.6 + 0.8 * rng.unit())) as i64;
                push(
                    &mut out,
                    Kind::BudgetContribution(pb::BudgetContribution {
                        partnership: pid.clone(),
                        agency: agency.clone(),
                        period: quarter.to_string(),
                        pooled_pence: pooled,
                        aligned_pence: (total - pooled).max(0),
                    }),
                );
                for r in 0..c.responses {
                    // Morale sinks through the restructuring partnership's last year.
                    let drift = if fortune == Fortune::Restructuring { -0.15 * q as f64 } else { 0.0 };
                    let mean = survey_mean + drift;
                    let item = |rng: &mut Rng| (rng.unit() > 0.1).then(|| rng.scale(mean, 5));
                    let mut response = pb::SurveyResponse {
                        partnership: pid.clone(),
                        period: quarter.to_string(),
                        response_id: format!("{m}-{r}"),
                        respondent_agency: agency.clone(),
                        shared_vision: item(&mut rng),
                        shared_values: item(&mut rng),
                        morale: item(&mut rng),
                        loyalty: item(&mut rng),
                        motivation: item(&mut rng),
                    };
                    if response.shared_vision.is_none() && response.morale.is_none() {
                        response.morale = Some(rng.scale(mean, 5));
                    }
                    push(&mut out, Kind::SurveyResponse(response));
                }
                // Neighbours on both sides first, so pairs can rate each other.
                let offsets =
                    (1..c.members).flat_map(|k| [k, c.members - k]).take(c.ratings.min(c.members - 1));
                let mut rated = std::collections::BTreeSet::new();
                for k in offsets {
                    if !rated.insert(k) {
                        continue;
                    }
                    let ratee = members[(m + k) % c.members].clone();
                    let s = |rng: &mut Rng| rng.scale(trust_mean, 4);
                    push(
                        &mut out,
                        Kind::RelationshipRating(pb::RelationshipRating {
                            partnership: pid.clone(),
                            period: quarter.to_string(),
                            rater: agency.clone(),
                            ratee,
                            reliability: s(&mut rng),
                            mission_support: s(&mut rng),
                            openness: s(&mut rng),
                            power_influence: s(&mut rng),
                            involvement: s(&mut rng),
                            resource_contribution: s(&mut rng),
                        }),
                    );
                }
            }
            for t in 0..c.teams {
                let lead = &members[t % c.members];
                let other = &members[(t + 1) % c.members];
                let mut entries = vec![pb::TeamEntry {
                    employer: lead.clone(),
                    employment: pb::Employment::Permanent as i32,
                    headcount: 4 + rng.below(8) as i64,
                }];
                if fortune != Fortune::Thriving || t == 0 {
                    entries.push(pb::TeamEntry {
                        employer: other.clone(),
                        employment: pb::Employment::Permanent as i32,
                        headcount: 1 + rng.below(4) as i64,
                    });
                }
                if fortune == Fortune::Fragmenting || t == 2 {
                    entries.push(pb::TeamEntry {
                        employer: providers[t % providers.len()].clone(),
                        employment: pb::Employment::AgencyStaff as i32,
                        headcount: 1 + rng.below(if fortune == Fortune::Fragmenting { 8 } else { 2 }) as i64,
                    });
                }
                push(
                    &mut out,
                    Kind::TeamComposition(pb::TeamComposition {
                        partnership: pid.clone(),
                        team_id: format!("team-{t}"),
                        period: quarter.to_string(),
                        reporting_agency: lead.clone(),
                        entries,
                    }),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let a = Synth::new(SynthConfig::demo());
        let b = Synth::new(SynthConfig::demo());
        assert_eq!(a.records_of(1), b.records_of(1));
        assert_ne!(a.records_of(1), a.records_of(2));
    }

    #[test]
    fn scale_picks_the_partnership_count() {
        let c = SynthConfig::scaled(1_000_000);
        let n = Synth::new(c).estimated_record_count();
        assert!((1_000_000..1_100_000).contains(&n), "{n}");
    }
}
