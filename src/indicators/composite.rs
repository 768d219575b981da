//! Domain scores, the Partnership Sustainability Index, its band, sensitivity and top
//! drags (methodology section 4), and the alerts (section 5).

use super::report::{
    Alert, AlertCode, Band, Composite, Domain, DomainResult, Indicator, MissingReason, SensitivityRun,
    TopDrag,
};

/// Domains needed for an index.
pub const MIN_DOMAINS: usize = 5;
/// The floor of a domain score inside the index, sensitivity and drags.
pub const FLOOR: f64 = 0.01;

/// GREEN at 70 and above, AMBER from 50, RED below; no tolerance.
pub fn band(psi: f64) -> Band {
    if psi >= 70.0 {
        Band::Green
    } else if psi >= 50.0 {
        Band::Amber
    } else {
        Band::Red
    }
}

/// Each domain's score: the mean of its present scored indicators, summed in
/// indicator order from 0.0.
pub fn domain_results(indicators: &[Indicator], weights: &[f64; 7]) -> Vec<DomainResult> {
    Domain::ALL
        .into_iter()
        .map(|domain| {
            let mine: Vec<&Indicator> = indicators.iter().filter(|i| i.domain == domain).collect();
            let mut sum = 0.0;
            let mut present = 0u32;
            for score in mine.iter().filter(|i| i.scored()).filter_map(|i| i.score) {
                sum += score;
                present += 1;
            }
            DomainResult {
                domain,
                score: (present > 0).then(|| sum / f64::from(present)),
                weight: weights[domain.index()],
                indicator_ids: mine.iter().map(|i| i.id).collect(),
                present,
            }
        })
        .collect()
}

impl DomainResult {
    pub fn missing(&self) -> Option<MissingReason> {
        self.score.is_none().then_some(MissingReason::NoData)
    }
}

/// The index over present domains `(score, weight)` in domain order, or `None` when
/// the weights sum to 0.
pub fn psi(present: &[(f64, f64)]) -> Option<f64> {
    let total: f64 = present.iter().fold(0.0, |w, &(_, wi)| w + wi);
    if total == 0.0 {
        return None;
    }
    let mut prod = 1.0;
    for &(d, w) in present {
        prod *= d.max(FLOOR).powf(w / total);
    }
    Some((100.0 * prod).clamp(1.0, 100.0))
}

pub fn composite(domains: &[DomainResult]) -> Composite {
    let present: Vec<(Domain, f64, f64)> =
        domains.iter().filter_map(|d| d.score.map(|s| (d.domain, s, d.weight))).collect();
    let total_weight = (!present.is_empty()).then(|| present.iter().fold(0.0, |w, &(_, _, wi)| w + wi));
    let base_inputs: Vec<(f64, f64)> = present.iter().map(|&(_, s, w)| (s, w)).collect();
    let base = if present.len() < MIN_DOMAINS { None } else { psi(&base_inputs) };
    let (Some(base), Some(total)) = (base, total_weight) else {
        return Composite { total_weight, ..Composite::default() };
    };

    let mut sensitivity = Vec::with_capacity(2 * present.len());
    for (i, &(domain, _, _)) in present.iter().enumerate() {
        for factor in [0.5, 1.5] {
            let mut inputs = base_inputs.clone();
            inputs[i].1 *= factor;
            // A run whose weights underflow to a sum of 0 has no index; it is left out.
            if let Some(p) = psi(&inputs) {
                sensitivity.push(SensitivityRun { domain, factor, psi: p, band: band(p) });
            }
        }
    }
    let runs = || std::iter::once(base).chain(sensitivity.iter().map(|r| r.psi));
    let psi_min = runs().fold(base, f64::min);
    let psi_max = runs().fold(base, f64::max);
    let band_stable = runs().all(|p| band(p) == band(base));

    let mut top_drags: Vec<TopDrag> = present
        .iter()
        .filter(|&&(_, s, w)| w > 0.0 && s.max(FLOOR) < 1.0)
        .map(|&(domain, s, w)| TopDrag { domain, term: (w / total) * (-(s.max(FLOOR).ln())) })
        .collect();
    top_drags.sort_by(|a, b| b.term.total_cmp(&a.term).then(a.domain.cmp(&b.domain)));
    top_drags.truncate(3);

    Composite {
        psi: Some(base),
        band: Some(band(base)),
        psi_min: Some(psi_min),
        psi_max: Some(psi_max),
        band_stable: Some(band_stable),
        sensitivity,
        top_drags,
        total_weight,
    }
}

const SURVEYS: [&str; 5] =
    ["survey_shared_vision", "survey_shared_values", "survey_morale", "survey_loyalty", "survey_motivation"];

/// The alerts of section 5, in order. `adopted` is V of D1 (alerts do not depend on
/// weights or on the index).
pub fn alerts(indicators: &[Indicator], adopted: Option<i64>) -> Vec<Alert> {
    let value = |id: &str| indicators.iter().find(|i| i.id == id).and_then(|i| i.value);
    let mut out = Vec::new();
    if adopted.is_none() {
        out.push(Alert {
            code: AlertCode::NoSharedPrinciples,
            message: "no version of shared principles adopted by the end of the period".into(),
            indicator_ids: vec!["vision_endorsement_coverage"],
        });
    }
    if let (Some(pooled), Some(coverage)) =
        (value("pooled_budget_share"), value("vision_endorsement_coverage"))
        && pooled > 0.0
        && coverage < 0.5
    {
        out.push(Alert {
            code: AlertCode::PooledWithoutVision,
            message: format!(
                "budgets are pooled (share {pooled}) while only {coverage} of members endorse the principles"
            ),
            indicator_ids: vec!["pooled_budget_share", "vision_endorsement_coverage"],
        });
    }
    if let Some(acceleration) = value("restructuring_acceleration")
        && acceleration > 0.0
    {
        out.push(Alert {
            code: AlertCode::RestructuringAccelerating,
            message: format!(
                "{acceleration} more restructuring events in the last 12 months than in the 12 before"
            ),
            indicator_ids: vec!["restructuring_acceleration"],
        });
    }
    let suppressed: Vec<&'static str> = indicators
        .iter()
        .filter(|i| SURVEYS.contains(&i.id) && i.missing == Some(MissingReason::SuppressedSmallNumber))
        .map(|i| i.id)
        .collect();
    if !suppressed.is_empty() {
        out.push(Alert {
            code: AlertCode::LowSurveyResponse,
            message: format!("too few survey answers to show {}", suppressed.join(", ")),
            indicator_ids: suppressed,
        });
    }
    out
}
