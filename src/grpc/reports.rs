//! ReportService: a partnership's report, a series of them, and every partnership's
//! report for one period as a stream.

use std::{
    collections::{BTreeMap, HashMap},
    pin::Pin,
    sync::Arc,
};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, instrument, warn};

use super::{pagination::PageLimits, records::record_kind_to_pb};
use crate::{
    domain::{Id, Period, PeriodType},
    error::{Error, FieldViolation, Result, ViolationKind, reason},
    indicators::{
        self, METHODOLOGY_VERSION, ReportOptions,
        report::{AlertCode, Band, Direction, Domain, InputValue, MissingReason, Report},
    },
    pb::{self, report_service_server::ReportService},
    storage::{PageRequest, Store},
};

/// Reports per page of a series.
const SERIES_PAGES: PageLimits = PageLimits { default: 12, max: 100 };
/// Reports computed ahead of a slow export reader; bounds the export's memory.
const EXPORT_BUFFER: usize = 4;
/// Partnerships read from storage at a time while exporting.
const EXPORT_CHUNK: u32 = 100;

#[derive(Debug, Clone)]
pub struct ReportApi {
    store: Arc<dyn Store>,
}

impl ReportApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ReportApi { store }
    }

    /// The rejection of a report request (methodology 2.4): every bad field, and the
    /// partnership if it is well formed but unknown.
    async fn reject(&self, partnership: Option<&Id>, mut violations: Vec<FieldViolation>) -> Error {
        if let Some(p) = partnership {
            match self.store.get_partnership(p).await {
                Ok(Some(_)) => {}
                Ok(None) => violations.push(unknown_partnership()),
                Err(e) => return e,
            }
        }
        Error::rejected(
            reason::INVALID_REPORT_REQUEST,
            violations.into_iter().map(|v| (0, v)).collect(),
            usize::MAX,
        )
    }
}

fn unknown_partnership() -> FieldViolation {
    FieldViolation::new("partnership", ViolationKind::UnknownPartnership, "names an unknown partnership")
}

fn parse_options(
    min_respondents: Option<i32>,
    weights: &HashMap<String, f64>,
    violations: &mut Vec<FieldViolation>,
) -> Option<ReportOptions> {
    let weights: BTreeMap<String, f64> = weights.iter().map(|(k, v)| (k.clone(), *v)).collect();
    ReportOptions::parse(min_respondents, &weights).map_err(|v| violations.extend(v)).ok()
}

fn parse_id(path: &str, s: &str, violations: &mut Vec<FieldViolation>) -> Option<Id> {
    Id::parse(s).map_err(|e| violations.push(FieldViolation::invalid(path, e))).ok()
}

fn parse_period(path: &str, s: &str, violations: &mut Vec<FieldViolation>) -> Option<Period> {
    Period::parse(s).map_err(|e| violations.push(FieldViolation::invalid(path, e))).ok()
}

/// A fingerprint of the options, for page tokens.
fn options_key(o: &ReportOptions) -> String {
    let weights: Vec<String> = o.weights.iter().map(|w| format!("{:x}", w.to_bits())).collect();
    format!("{}:{}", o.min_respondents, weights.join(","))
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportReportsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ReportService for ReportApi {
    #[instrument(skip_all)]
    async fn get_partnership_report(
        &self,
        request: Request<pb::GetPartnershipReportRequest>,
    ) -> Result<Response<pb::PartnershipReport>, Status> {
        let req = request.into_inner();
        let mut violations = Vec::new();
        let partnership = parse_id("partnership", &req.partnership, &mut violations);
        let period = parse_period("period", &req.period, &mut violations);
        let options = parse_options(req.min_respondents, &req.weights, &mut violations);
        let (Some(partnership), Some(period), Some(options), true) =
            (&partnership, period, options, violations.is_empty())
        else {
            return Err(self.reject(partnership.as_ref(), violations).await.into());
        };
        let Some(data) = self.store.report_data(partnership, period.start(), period.end()).await? else {
            return Err(self.reject(None, vec![unknown_partnership()]).await.into());
        };
        let report = indicators::compute(partnership, period, &data.memberships, &data.records, &options);
        Ok(Response::new(report_to_pb(&report)))
    }

    #[instrument(skip_all)]
    async fn list_partnership_reports(
        &self,
        request: Request<pb::ListPartnershipReportsRequest>,
    ) -> Result<Response<pb::ListPartnershipReportsResponse>, Status> {
        let req = request.into_inner();
        let mut violations = Vec::new();
        let partnership = parse_id("partnership", &req.partnership, &mut violations);
        let start = parse_period("start_period", &req.start_period, &mut violations);
        let end = parse_period("end_period", &req.end_period, &mut violations);
        if let (Some(s), Some(e)) = (start, end) {
            if s.period_type() != e.period_type() {
                violations
                    .push(FieldViolation::invalid("end_period", "must be of the same type as start_period"));
            } else if e.start() < s.start() {
                violations.push(FieldViolation::invalid("end_period", "must not be before start_period"));
            }
        }
        let options = parse_options(req.min_respondents, &req.weights, &mut violations);
        let (Some(partnership), Some(start), Some(end), Some(options), true) =
            (&partnership, start, end, options, violations.is_empty())
        else {
            return Err(self.reject(partnership.as_ref(), violations).await.into());
        };
        let fingerprint = format!("reports:{partnership}:{start}:{end}:{}", options_key(&options));
        let page = super::pagination::Page::parse(req.page_size, &req.page_token, SERIES_PAGES, fingerprint)?;
        // The token holds the last period sent; the page starts after it.
        let first = match &page.after {
            None => Some(start),
            Some(last) => Period::parse(last)
                .ok()
                .filter(|p| p.period_type() == start.period_type())
                .ok_or_else(|| {
                    Error::invalid_field(reason::INVALID_PAGE_TOKEN, "page_token", "is not valid")
                })?
                .succ(),
        };
        let mut periods = Vec::new();
        let mut next = first;
        while let Some(p) = next {
            if p.start() > end.start() || periods.len() > page.size as usize {
                break;
            }
            periods.push(p);
            next = p.succ();
        }
        let in_page = periods.len().min(page.size as usize);
        let (Some(from), Some(to)) = (periods.first(), in_page.checked_sub(1).and_then(|i| periods.get(i)))
        else {
            return Ok(Response::new(pb::ListPartnershipReportsResponse::default()));
        };
        let Some(data) = self.store.report_data(partnership, from.start(), to.end()).await? else {
            return Err(self.reject(None, vec![unknown_partnership()]).await.into());
        };
        let next_page_token = page.finish(&mut periods, |p| p.to_string());
        let reports = periods
            .iter()
            .map(|&p| {
                report_to_pb(&indicators::compute(partnership, p, &data.memberships, &data.records, &options))
            })
            .collect();
        Ok(Response::new(pb::ListPartnershipReportsResponse { reports, next_page_token }))
    }

    type ExportReportsStream = ExportStream;

    #[instrument(skip_all)]
    async fn export_reports(
        &self,
        request: Request<pb::ExportReportsRequest>,
    ) -> Result<Response<Self::ExportReportsStream>, Status> {
        let req = request.into_inner();
        let mut violations = Vec::new();
        let period = parse_period("period", &req.period, &mut violations);
        let options = parse_options(req.min_respondents, &req.weights, &mut violations);
        let (Some(period), Some(options), true) = (period, options, violations.is_empty()) else {
            return Err(self.reject(None, violations).await.into());
        };
        let (tx, rx) = mpsc::channel(EXPORT_BUFFER);
        let store = self.store.clone();
        // Partnerships are read a chunk at a time and each report is sent as soon as it
        // is computed, so the first arrives at once and memory does not grow with the
        // number of partnerships.
        tokio::spawn(
            async move {
                let mut after: Option<String> = None;
                loop {
                    let chunk = match store
                        .list_partnerships(PageRequest { after: after.clone(), limit: EXPORT_CHUNK })
                        .await
                    {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    };
                    for p in &chunk {
                        let report = match store.report_data(&p.id, period.start(), period.end()).await {
                            Ok(Some(data)) => {
                                indicators::compute(&p.id, period, &data.memberships, &data.records, &options)
                            }
                            // Partnerships are never deleted; nothing to report if one were.
                            Ok(None) => continue,
                            Err(e) => {
                                let _ = tx.send(Err(e.into())).await;
                                return;
                            }
                        };
                        if tx
                            .send(Ok(pb::ExportReportsResponse { report: Some(report_to_pb(&report)) }))
                            .await
                            .is_err()
                        {
                            warn!("export client went away");
                            return;
                        }
                    }
                    match chunk.last() {
                        Some(last) if chunk.len() == EXPORT_CHUNK as usize => {
                            after = Some(last.id.to_string())
                        }
                        _ => return,
                    }
                }
            }
            .in_current_span(),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn period_type_to_pb(t: PeriodType) -> pb::PeriodType {
    match t {
        PeriodType::Year => pb::PeriodType::Year,
        PeriodType::Quarter => pb::PeriodType::Quarter,
        PeriodType::Month => pb::PeriodType::Month,
        PeriodType::FinancialYearApril => pb::PeriodType::FinancialYearApril,
    }
}

fn missing_to_pb(m: Option<MissingReason>) -> i32 {
    (match m {
        None => pb::MissingReason::Unspecified,
        Some(MissingReason::NoData) => pb::MissingReason::NoData,
        Some(MissingReason::SuppressedSmallNumber) => pb::MissingReason::SuppressedSmallNumber,
        Some(MissingReason::NoMembers) => pb::MissingReason::NoMembers,
        Some(MissingReason::InsufficientData) => pb::MissingReason::InsufficientData,
    }) as i32
}

fn band_to_pb(b: Option<Band>) -> i32 {
    (match b {
        None => pb::Band::Unspecified,
        Some(Band::Green) => pb::Band::Green,
        Some(Band::Amber) => pb::Band::Amber,
        Some(Band::Red) => pb::Band::Red,
    }) as i32
}

fn input_to_pb(name: &str, v: &InputValue) -> pb::IndicatorInput {
    use pb::indicator_input::Value;
    let value = match v {
        InputValue::Int(i) => Some(match i64::try_from(*i) {
            Ok(small) => Value::IntValue(small),
            Err(_) => Value::BigIntValue(i.to_string()),
        }),
        InputValue::Float(f) => Some(Value::DoubleValue(*f)),
        InputValue::Date(d) => Some(Value::DateValue(d.clone())),
        InputValue::Null => None,
    };
    pb::IndicatorInput { name: name.to_string(), value }
}

/// A report on the wire.
pub fn report_to_pb(r: &Report) -> pb::PartnershipReport {
    let indicators = r
        .indicators
        .iter()
        .map(|i| pb::Indicator {
            id: i.id.to_string(),
            domain: i.domain.id().to_string(),
            scored: i.scored(),
            value: i.value,
            score: i.score,
            goalposts: i.goalposts.map(|g| pb::Goalposts { worst: g.worst, best: g.best }),
            direction: (match i.goalposts.map(|g| g.direction()) {
                None => pb::Direction::Unspecified,
                Some(Direction::HigherIsBetter) => pb::Direction::HigherIsBetter,
                Some(Direction::LowerIsBetter) => pb::Direction::LowerIsBetter,
            }) as i32,
            inputs: i.inputs.iter().map(|(n, v)| input_to_pb(n, v)).collect(),
            records_used: i.records_used as i64,
            missing_reason: missing_to_pb(i.missing),
            trust_received_by_agency: i
                .by_agency
                .iter()
                .map(|t| pb::AgencyTrust {
                    agency: t.agency.to_string(),
                    value: t.value,
                    ties: t.ties as i64,
                })
                .collect(),
            explanation: i.explanation.clone(),
        })
        .collect();
    let domains = r
        .domains
        .iter()
        .map(|d| pb::DomainScore {
            domain: d.domain.id().to_string(),
            title: d.domain.title().to_string(),
            score: d.score,
            missing_reason: missing_to_pb(d.missing()),
            weight: d.weight,
            indicator_ids: d.indicator_ids.iter().map(|s| s.to_string()).collect(),
            present_indicators: d.present as i32,
        })
        .collect();
    let c = &r.composite;
    let composite = pb::Composite {
        psi: c.psi,
        missing_reason: missing_to_pb(c.psi.is_none().then_some(MissingReason::InsufficientData)),
        band: band_to_pb(c.band),
        psi_min: c.psi_min,
        psi_max: c.psi_max,
        band_stable: c.band_stable,
        sensitivity: c
            .sensitivity
            .iter()
            .map(|s| pb::SensitivityRun {
                domain: s.domain.id().to_string(),
                factor: s.factor,
                psi: s.psi,
                band: band_to_pb(Some(s.band)),
            })
            .collect(),
        top_drags: c
            .top_drags
            .iter()
            .map(|t| pb::TopDrag { domain: t.domain.id().to_string(), term: t.term })
            .collect(),
        total_weight: c.total_weight,
    };
    let alerts = r
        .alerts
        .iter()
        .map(|a| pb::Alert {
            code: (match a.code {
                AlertCode::NoSharedPrinciples => pb::AlertCode::NoSharedPrinciples,
                AlertCode::PooledWithoutVision => pb::AlertCode::PooledWithoutVision,
                AlertCode::RestructuringAccelerating => pb::AlertCode::RestructuringAccelerating,
                AlertCode::LowSurveyResponse => pb::AlertCode::LowSurveyResponse,
            }) as i32,
            message: a.message.clone(),
            indicator_ids: a.indicator_ids.iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    pb::PartnershipReport {
        methodology_version: METHODOLOGY_VERSION.to_string(),
        partnership: r.partnership.to_string(),
        period: Some(pb::ReportPeriod {
            id: r.period.to_string(),
            r#type: period_type_to_pb(r.period.period_type()) as i32,
            start_date: r.period.start().to_string(),
            end_date: r.period.end().to_string(),
            months: i32::from(r.period.months()),
        }),
        member_count: r.members.len() as i64,
        members: r.members.iter().map(Id::to_string).collect(),
        min_respondents: r.min_respondents as i32,
        weights: Domain::ALL
            .iter()
            .map(|d| pb::DomainWeight { domain: d.id().to_string(), weight: r.weights[d.index()] })
            .collect(),
        indicators,
        domains,
        composite: Some(composite),
        alerts,
        coverage: Some(pb::Coverage {
            members: r.members.len() as i64,
            kinds: r
                .coverage
                .iter()
                .map(|&(k, n)| pb::KindCoverage {
                    kind: record_kind_to_pb(k) as i32,
                    reporting_members: n as i64,
                })
                .collect(),
        }),
    }
}
