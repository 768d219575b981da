//! Records between the wire and the domain: `pb::Record` into unchecked
//! [`RecordInput`]s (the checks are the domain's), and checked [`Record`]s back.

use crate::{
    domain::{
        check::{
            BudgetContributionInput, PrinciplesAdoptionInput, PrinciplesEndorsementInput, RecordInput,
            RelationshipRatingInput, RestructuringEventInput, ServiceContractInput, SurveyResponseInput,
            TeamCompositionInput, TeamEntryInput, WorkforceReturnInput,
        },
        records::{Delivery, Employment, Record, RecordKind, RestructuringKind},
    },
    pb::{self, record::Kind},
};

fn delivery(v: i32) -> Option<Delivery> {
    match pb::Delivery::try_from(v).ok()? {
        pb::Delivery::Unspecified => None,
        pb::Delivery::InHouse => Some(Delivery::InHouse),
        pb::Delivery::Outsourced => Some(Delivery::Outsourced),
    }
}

fn employment(v: i32) -> Option<Employment> {
    match pb::Employment::try_from(v).ok()? {
        pb::Employment::Unspecified => None,
        pb::Employment::Permanent => Some(Employment::Permanent),
        pb::Employment::FixedTerm => Some(Employment::FixedTerm),
        pb::Employment::AgencyStaff => Some(Employment::AgencyStaff),
    }
}

fn restructuring_kind(v: i32) -> Option<RestructuringKind> {
    match pb::RestructuringKind::try_from(v).ok()? {
        pb::RestructuringKind::Unspecified => None,
        pb::RestructuringKind::Merger => Some(RestructuringKind::Merger),
        pb::RestructuringKind::Reorganisation => Some(RestructuringKind::Reorganisation),
        pb::RestructuringKind::LeadershipChange => Some(RestructuringKind::LeadershipChange),
        pb::RestructuringKind::OutsourcingTransfer => Some(RestructuringKind::OutsourcingTransfer),
        pb::RestructuringKind::Insourcing => Some(RestructuringKind::Insourcing),
        pb::RestructuringKind::Other => Some(RestructuringKind::Other),
    }
}

/// `Some(None)` for UNSPECIFIED (no filter); `None` for a number this build does not
/// know.
pub fn record_kind_filter(v: i32) -> Option<Option<RecordKind>> {
    if v == 0 {
        return Some(None);
    }
    RecordKind::from_code(i64::from(v)).map(Some)
}

pub fn record_kind_to_pb(k: RecordKind) -> pb::RecordKind {
    match k {
        RecordKind::WorkforceReturn => pb::RecordKind::WorkforceReturn,
        RecordKind::ServiceContract => pb::RecordKind::ServiceContract,
        RecordKind::TeamComposition => pb::RecordKind::TeamComposition,
        RecordKind::SurveyResponse => pb::RecordKind::SurveyResponse,
        RecordKind::RelationshipRating => pb::RecordKind::RelationshipRating,
        RecordKind::PrinciplesAdoption => pb::RecordKind::PrinciplesAdoption,
        RecordKind::PrinciplesEndorsement => pb::RecordKind::PrinciplesEndorsement,
        RecordKind::RestructuringEvent => pb::RecordKind::RestructuringEvent,
        RecordKind::BudgetContribution => pb::RecordKind::BudgetContribution,
    }
}

/// A wire record as an unchecked input; moves its strings rather than copying them.
pub fn input_from_pb(r: pb::Record) -> RecordInput {
    match r.kind {
        None => RecordInput::Missing,
        Some(Kind::WorkforceReturn(w)) => RecordInput::WorkforceReturn(WorkforceReturnInput {
            partnership: w.partnership,
            agency: w.agency,
            period: w.period,
            headcount_start: w.headcount_start,
            headcount_end: w.headcount_end,
            joiners: w.joiners,
            leavers: w.leavers,
            permanent: w.permanent,
            fixed_term: w.fixed_term,
            agency_staff: w.agency_staff,
            staff_over_one_year_service: w.staff_over_one_year_service,
            headcount_one_year_ago: w.headcount_one_year_ago,
        }),
        Some(Kind::ServiceContract(c)) => RecordInput::ServiceContract(ServiceContractInput {
            partnership: c.partnership,
            contract_id: c.contract_id,
            service_name: c.service_name,
            commissioner: c.commissioner,
            provider: c.provider,
            delivery: delivery(c.delivery),
            annual_value_pence: c.annual_value_pence,
            start_date: c.start_date,
            end_date: c.end_date,
        }),
        Some(Kind::TeamComposition(t)) => RecordInput::TeamComposition(TeamCompositionInput {
            partnership: t.partnership,
            team_id: t.team_id,
            period: t.period,
            reporting_agency: t.reporting_agency,
            entries: t
                .entries
                .into_iter()
                .map(|e| TeamEntryInput {
                    employer: e.employer,
                    employment: employment(e.employment),
                    headcount: e.headcount,
                })
                .collect(),
        }),
        Some(Kind::SurveyResponse(s)) => RecordInput::SurveyResponse(SurveyResponseInput {
            partnership: s.partnership,
            period: s.period,
            response_id: s.response_id,
            respondent_agency: s.respondent_agency,
            shared_vision: s.shared_vision,
            shared_values: s.shared_values,
            morale: s.morale,
            loyalty: s.loyalty,
            motivation: s.motivation,
        }),
        Some(Kind::RelationshipRating(r)) => RecordInput::RelationshipRating(RelationshipRatingInput {
            partnership: r.partnership,
            period: r.period,
            rater: r.rater,
            ratee: r.ratee,
            reliability: r.reliability,
            mission_support: r.mission_support,
            openness: r.openness,
            power_influence: r.power_influence,
            involvement: r.involvement,
            resource_contribution: r.resource_contribution,
        }),
        Some(Kind::PrinciplesAdoption(a)) => RecordInput::PrinciplesAdoption(PrinciplesAdoptionInput {
            partnership: a.partnership,
            version: a.version,
            title: a.title,
            adoption_date: a.adoption_date,
            reporting_agency: a.reporting_agency,
        }),
        Some(Kind::PrinciplesEndorsement(e)) => {
            RecordInput::PrinciplesEndorsement(PrinciplesEndorsementInput {
                partnership: e.partnership,
                version: e.version,
                agency: e.agency,
                endorsement_date: e.endorsement_date,
            })
        }
        Some(Kind::RestructuringEvent(e)) => RecordInput::RestructuringEvent(RestructuringEventInput {
            agency: e.agency,
            event_id: e.event_id,
            date: e.date,
            kind: restructuring_kind(e.kind),
            staff_affected: e.staff_affected,
        }),
        Some(Kind::BudgetContribution(b)) => RecordInput::BudgetContribution(BudgetContributionInput {
            partnership: b.partnership,
            agency: b.agency,
            period: b.period,
            pooled_pence: b.pooled_pence,
            aligned_pence: b.aligned_pence,
        }),
    }
}

/// A checked record on the wire.
pub fn record_to_pb(r: &Record) -> pb::Record {
    let kind = match r {
        Record::WorkforceReturn(w) => Kind::WorkforceReturn(pb::WorkforceReturn {
            partnership: w.partnership.to_string(),
            agency: w.agency.to_string(),
            period: w.period.to_string(),
            headcount_start: w.headcount_start,
            headcount_end: w.headcount_end,
            joiners: w.joiners,
            leavers: w.leavers,
            permanent: w.permanent,
            fixed_term: w.fixed_term,
            agency_staff: w.agency_staff,
            staff_over_one_year_service: w.stability.map(|s| s.staff_over_one_year_service),
            headcount_one_year_ago: w.stability.map(|s| s.headcount_one_year_ago),
        }),
        Record::ServiceContract(c) => Kind::ServiceContract(pb::ServiceContract {
            partnership: c.partnership.to_string(),
            contract_id: c.contract_id.to_string(),
            service_name: c.service_name.clone(),
            commissioner: c.commissioner.to_string(),
            provider: c.provider.to_string(),
            delivery: match c.delivery {
                Delivery::InHouse => pb::Delivery::InHouse,
                Delivery::Outsourced => pb::Delivery::Outsourced,
            } as i32,
            annual_value_pence: c.annual_value_pence,
            start_date: c.start_date.to_string(),
            end_date: c.end_date.to_string(),
        }),
        Record::TeamComposition(t) => Kind::TeamComposition(pb::TeamComposition {
            partnership: t.partnership.to_string(),
            team_id: t.team_id.to_string(),
            period: t.period.to_string(),
            reporting_agency: t.reporting_agency.to_string(),
            entries: t
                .entries
                .iter()
                .map(|e| pb::TeamEntry {
                    employer: e.employer.to_string(),
                    employment: match e.employment {
                        Employment::Permanent => pb::Employment::Permanent,
                        Employment::FixedTerm => pb::Employment::FixedTerm,
                        Employment::AgencyStaff => pb::Employment::AgencyStaff,
                    } as i32,
                    headcount: e.headcount,
                })
                .collect(),
        }),
        Record::SurveyResponse(s) => Kind::SurveyResponse(pb::SurveyResponse {
            partnership: s.partnership.to_string(),
            period: s.period.to_string(),
            response_id: s.response_id.to_string(),
            respondent_agency: s.respondent_agency.to_string(),
            shared_vision: s.items.shared_vision.map(i32::from),
            shared_values: s.items.shared_values.map(i32::from),
            morale: s.items.morale.map(i32::from),
            loyalty: s.items.loyalty.map(i32::from),
            motivation: s.items.motivation.map(i32::from),
        }),
        Record::RelationshipRating(r) => Kind::RelationshipRating(pb::RelationshipRating {
            partnership: r.partnership.to_string(),
            period: r.period.to_string(),
            rater: r.rater.to_string(),
            ratee: r.ratee.to_string(),
            reliability: r.reliability.into(),
            mission_support: r.mission_support.into(),
            openness: r.openness.into(),
            power_influence: r.power_influence.into(),
            involvement: r.involvement.into(),
            resource_contribution: r.resource_contribution.into(),
        }),
        Record::PrinciplesAdoption(a) => Kind::PrinciplesAdoption(pb::PrinciplesAdoption {
            partnership: a.partnership.to_string(),
            version: a.version,
            title: a.title.clone(),
            adoption_date: a.adoption_date.to_string(),
            reporting_agency: a.reporting_agency.to_string(),
        }),
        Record::PrinciplesEndorsement(e) => Kind::PrinciplesEndorsement(pb::PrinciplesEndorsement {
            partnership: e.partnership.to_string(),
            version: e.version,
            agency: e.agency.to_string(),
            endorsement_date: e.endorsement_date.to_string(),
        }),
        Record::RestructuringEvent(e) => Kind::RestructuringEvent(pb::RestructuringEvent {
            agency: e.agency.to_string(),
            event_id: e.event_id.to_string(),
            date: e.date.to_string(),
            kind: match e.kind {
                RestructuringKind::Merger => pb::RestructuringKind::Merger,
                RestructuringKind::Reorganisation => pb::RestructuringKind::Reorganisation,
                RestructuringKind::LeadershipChange => pb::RestructuringKind::LeadershipChange,
                RestructuringKind::OutsourcingTransfer => pb::RestructuringKind::OutsourcingTransfer,
                RestructuringKind::Insourcing => pb::RestructuringKind::Insourcing,
                RestructuringKind::Other => pb::RestructuringKind::Other,
            } as i32,
            staff_affected: e.staff_affected,
        }),
        Record::BudgetContribution(b) => Kind::BudgetContribution(pb::BudgetContribution {
            partnership: b.partnership.to_string(),
            agency: b.agency.to_string(),
            period: b.period.to_string(),
            pooled_pence: b.pooled_pence,
            aligned_pence: b.aligned_pence,
        }),
    };
    pb::Record { kind: Some(kind) }
}
