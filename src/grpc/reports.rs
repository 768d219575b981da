//! ReportService: a partnership's report, a series of them, and every partnership's
//! report for one period as a stream.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use prost::Message;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Status,
    codec::{Codec, EncodeBuf, Encoder},
    server::{Grpc, NamedService},
};
use tonic_prost::ProstDecoder;
use tracing::{Instrument, info_span, warn};

use super::{authz, pagination::PageLimits, records::record_kind_to_pb, report_cache::ReportCache};
use crate::{
    domain::{Id, Period, PeriodType, access::Access},
    error::{Error, FieldViolation, Result, ViolationKind, reason},
    indicators::{
        self, METHODOLOGY_VERSION, ReportOptions,
        report::{AlertCode, Band, Direction, Domain, InputValue, MissingReason, Report},
    },
    pb,
    storage::{PageRequest, Store},
    telemetry::metrics::metrics,
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
    cache: Arc<ReportCache>,
}

/// The rejection of a report request (methodology 2.4): every bad field, and the
/// partnership if it is well formed but unknown.
async fn reject(
    store: &Arc<dyn Store>,
    partnership: Option<&Id>,
    mut violations: Vec<FieldViolation>,
) -> Error {
    if let Some(p) = partnership {
        match store.get_partnership(p).await {
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

/// Reports, encoded, one per (partnership, period) asked for, `None` for an unknown
/// partnership: from the cache where the partnership's data has not changed since the
/// report was computed, the rest computed from one storage read for all of them.
/// Versions are read before the data, so an entry's data is never older than its
/// version, whatever writes run in between.
async fn reports(
    store: &Arc<dyn Store>,
    cache: &ReportCache,
    items: &[(Id, Period)],
    options: &ReportOptions,
) -> Result<Vec<Option<Bytes>>> {
    let options_key = options_key(options);
    let mut out = vec![None; items.len()];
    let mut missing = Vec::new();
    let ids: Vec<Id> = items.iter().map(|(p, _)| p.clone()).collect();
    let versions = store.data_versions(&ids).await?;
    for (i, ((partnership, period), version)) in items.iter().zip(versions).enumerate() {
        let Some(version) = version else { continue };
        match cache.get(&(partnership.clone(), *period, options_key.clone()), version) {
            Some(hit) => out[i] = Some(hit),
            None => missing.push((i, version)),
        }
    }
    metrics().report_cache((items.len() - missing.len()) as u64, missing.len() as u64);
    let (Some(from), Some(to)) = (
        missing.iter().map(|&(i, _)| items[i].1.start()).min(),
        missing.iter().map(|&(i, _)| items[i].1.end()).max(),
    ) else {
        return Ok(out);
    };
    let ids: Vec<Id> = missing
        .iter()
        .map(|&(i, _)| items[i].0.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let read = info_span!(
        "storage.report_data",
        otel.kind = "client",
        db.system.name = store.backend(),
        partnerships = ids.len()
    );
    let data = store.report_data(&ids, from, to).instrument(read).await?;
    for (i, version) in missing {
        let (partnership, period) = &items[i];
        let Ok(at) = ids.binary_search(partnership) else { continue };
        let d = &data[at];
        let report = info_span!("report.compute", partnership = %partnership, period = %period)
            .in_scope(|| indicators::compute(partnership, *period, &d.memberships, &d.records, options));
        let encoded = Bytes::from(report_to_pb(&report).encode_to_vec());
        cache.put((partnership.clone(), *period, options_key.clone()), version, encoded.clone());
        out[i] = Some(encoded);
    }
    Ok(out)
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

/// A fingerprint of the options, for cache keys and page tokens.
fn options_key(o: &ReportOptions) -> String {
    let weights: Vec<String> = o.weights.iter().map(|w| format!("{:x}", w.to_bits())).collect();
    format!("{}:{}", o.min_respondents, weights.join(","))
}

/// Appends field `tag` holding already-encoded message bytes: the wire form of a
/// nested message, so cached reports go out without being decoded and re-encoded.
fn put_message_field(tag: u32, message: &[u8], out: &mut BytesMut) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(message.len() as u64, out);
    out.put_slice(message);
}

type ExportStream = ReceiverStream<std::result::Result<Bytes, Status>>;

impl ReportApi {
    pub fn new(store: Arc<dyn Store>, cache_bytes: usize) -> Self {
        ReportApi { store, cache: Arc::new(ReportCache::new(cache_bytes)) }
    }

    /// GetPartnershipReport, answered with an encoded PartnershipReport.
    pub async fn get(&self, access: &Access, req: pb::GetPartnershipReportRequest) -> Result<Bytes> {
        let mut violations = Vec::new();
        let partnership = parse_id("partnership", &req.partnership, &mut violations);
        if let Some(p) = &partnership {
            authz::require_partnership(access, &self.store, p).await?;
        }
        let period = parse_period("period", &req.period, &mut violations);
        let options = parse_options(req.min_respondents, &req.weights, &mut violations);
        let (Some(partnership), Some(period), Some(options), true) =
            (&partnership, period, options, violations.is_empty())
        else {
            return Err(reject(&self.store, partnership.as_ref(), violations).await);
        };
        match reports(&self.store, &self.cache, &[(partnership.clone(), period)], &options)
            .await?
            .pop()
            .flatten()
        {
            Some(encoded) => Ok(encoded),
            None => Err(reject(&self.store, None, vec![unknown_partnership()]).await),
        }
    }

    /// ListPartnershipReports, answered with an encoded ListPartnershipReportsResponse.
    pub async fn list(&self, access: &Access, req: pb::ListPartnershipReportsRequest) -> Result<Bytes> {
        let mut violations = Vec::new();
        let partnership = parse_id("partnership", &req.partnership, &mut violations);
        if let Some(p) = &partnership {
            authz::require_partnership(access, &self.store, p).await?;
        }
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
            return Err(reject(&self.store, partnership.as_ref(), violations).await);
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
        let next_page_token = page.finish(&mut periods, |p| p.to_string());
        let items: Vec<(Id, Period)> = periods.into_iter().map(|p| (partnership.clone(), p)).collect();
        let mut out = BytesMut::new();
        for encoded in reports(&self.store, &self.cache, &items, &options).await? {
            let Some(encoded) = encoded else {
                return Err(reject(&self.store, None, vec![unknown_partnership()]).await);
            };
            put_message_field(1, &encoded, &mut out);
        }
        if !next_page_token.is_empty() {
            put_message_field(2, next_page_token.as_bytes(), &mut out);
        }
        Ok(out.freeze())
    }

    /// ExportReports: a stream of encoded ExportReportsResponse messages.
    pub async fn export(&self, access: &Access, req: pb::ExportReportsRequest) -> Result<ExportStream> {
        let mut violations = Vec::new();
        let period = parse_period("period", &req.period, &mut violations);
        let options = parse_options(req.min_respondents, &req.weights, &mut violations);
        let (Some(period), Some(options), true) = (period, options, violations.is_empty()) else {
            return Err(reject(&self.store, None, violations).await);
        };
        let (tx, rx) = mpsc::channel(EXPORT_BUFFER);
        let (store, cache) = (self.store.clone(), self.cache.clone());
        // A scoped caller's export holds the partnerships its agency is or was in.
        let member = access.agency().cloned();
        tokio::spawn(
            async move {
                if let Err(e) = send_exports(store, cache, member, period, options, &tx).await {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
            .in_current_span(),
        );
        Ok(ReceiverStream::new(rx))
    }
}

/// Sends every partnership's report for `period`, in id order. Partnerships are read a
/// chunk at a time and each report is sent as soon as its chunk is computed, so the
/// first arrives at once and memory does not grow with the number of partnerships. The
/// next chunk is read and computed on its own task while the current one is sent, so
/// reading, computing and sending overlap; at most two chunks are held at once.
async fn send_exports(
    store: Arc<dyn Store>,
    cache: Arc<ReportCache>,
    member: Option<Id>,
    period: Period,
    options: ReportOptions,
    tx: &mpsc::Sender<std::result::Result<Bytes, Status>>,
) -> Result<()> {
    let options = Arc::new(options);
    let compute = |chunk: Vec<(Id, Period)>| {
        let (store, cache, options) = (store.clone(), cache.clone(), options.clone());
        tokio::spawn(async move { reports(&store, &cache, &chunk, &options).await }.in_current_span())
    };
    let mut after: Option<String> = None;
    let mut more = true;
    let mut in_flight: Option<JoinHandle<Result<Vec<Option<Bytes>>>>> = None;
    while more || in_flight.is_some() {
        let next = if more {
            let page = PageRequest { after: after.take(), limit: EXPORT_CHUNK };
            let chunk = match &member {
                None => store.list_partnerships(page).await?,
                Some(agency) => store.list_partnerships_of(agency, page).await?,
            };
            more = chunk.len() == EXPORT_CHUNK as usize;
            after = chunk.last().map(|p| p.id.to_string());
            (!chunk.is_empty()).then(|| compute(chunk.into_iter().map(|p| (p.id, period)).collect()))
        } else {
            None
        };
        let Some(current) = std::mem::replace(&mut in_flight, next) else { continue };
        let encoded =
            current.await.map_err(|e| Error::internal(anyhow::anyhow!("export task failed: {e}")))??;
        // Partnerships are never deleted, so none is None; skipped if one were.
        for report in encoded.into_iter().flatten() {
            let mut message = BytesMut::with_capacity(report.len() + 8);
            put_message_field(1, &report, &mut message);
            if tx.send(Ok(message.freeze())).await.is_err() {
                warn!("export client went away");
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A codec whose responses are protobuf messages encoded already.
#[derive(Debug)]
struct EncodedCodec<D>(PhantomData<D>);

impl<D> Default for EncodedCodec<D> {
    fn default() -> Self {
        EncodedCodec(PhantomData)
    }
}

#[derive(Debug, Default)]
struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> std::result::Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl<D: Message + Default + Send + 'static> Codec for EncodedCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder::default()
    }
}

/// The `partnership.v1.ReportService` routes. Hand-written instead of the generated
/// server so that cached reports, kept encoded, are sent as they are: the generated
/// server would take each report by value, to be copied and encoded again per call.
#[derive(Debug, Clone)]
pub struct ReportRoutes {
    api: Arc<ReportApi>,
}

impl ReportRoutes {
    pub fn new(api: ReportApi) -> Self {
        ReportRoutes { api: Arc::new(api) }
    }
}

impl NamedService for ReportRoutes {
    const NAME: &'static str = "partnership.v1.ReportService";
}

impl<B> tower::Service<http::Request<B>> for ReportRoutes
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, std::result::Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let api = self.api.clone();
        match req.uri().path() {
            "/partnership.v1.ReportService/GetPartnershipReport" => Box::pin(async move {
                let method = tower::service_fn(move |r: tonic::Request<pb::GetPartnershipReportRequest>| {
                    let api = api.clone();
                    async move {
                        let grant = authz::grant(&r)?;
                        api.get(&grant.access, r.into_inner())
                            .await
                            .map(tonic::Response::new)
                            .map_err(Status::from)
                    }
                });
                Ok(Grpc::new(EncodedCodec::<pb::GetPartnershipReportRequest>::default())
                    .unary(method, req)
                    .await)
            }),
            "/partnership.v1.ReportService/ListPartnershipReports" => Box::pin(async move {
                let method =
                    tower::service_fn(move |r: tonic::Request<pb::ListPartnershipReportsRequest>| {
                        let api = api.clone();
                        async move {
                            let grant = authz::grant(&r)?;
                            api.list(&grant.access, r.into_inner())
                                .await
                                .map(tonic::Response::new)
                                .map_err(Status::from)
                        }
                    });
                Ok(Grpc::new(EncodedCodec::<pb::ListPartnershipReportsRequest>::default())
                    .unary(method, req)
                    .await)
            }),
            "/partnership.v1.ReportService/ExportReports" => Box::pin(async move {
                let method = tower::service_fn(move |r: tonic::Request<pb::ExportReportsRequest>| {
                    let api = api.clone();
                    async move {
                        let grant = authz::grant(&r)?;
                        api.export(&grant.access, r.into_inner())
                            .await
                            .map(tonic::Response::new)
                            .map_err(Status::from)
                    }
                });
                Ok(Grpc::new(EncodedCodec::<pb::ExportReportsRequest>::default())
                    .server_streaming(method, req)
                    .await)
            }),
            other => {
                let status = Error::unimplemented(format!("{other} is not a method of {}", Self::NAME));
                Box::pin(async move { Ok(Status::from(status).into_http()) })
            }
        }
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
