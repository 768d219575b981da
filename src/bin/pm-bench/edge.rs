//! The edge under load: report reads offered far beyond capacity (shed with
//! RetryInfo, which the generator honours, as the contract asks of callers);
//! concurrent IngestRecords streams on PostgreSQL through one and two replicas; and
//! the cost of one ListRecords page under each filter.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use partnership_metrics::{
    cli::synth::Synth,
    pb::{self, ingest_records_response::Result as Ack, submission_service_client::SubmissionServiceClient},
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    load::{self, LoadResult},
    server::cpu_seconds,
    stats::{Figure, Row},
};

/// One GetPartnershipReport of a partnership picked by `seq` (its request framed
/// beforehand), over a bare HTTP/2 connection; a shed answer waits for its
/// RetryInfo's delay before it is counted, as a well-behaved caller would.
pub async fn report_call(
    ch: load::H2Channel,
    frames: Arc<Vec<bytes::Bytes>>,
    seq: u64,
) -> Result<(), tonic::Status> {
    let frame = frames[(seq.wrapping_mul(2_654_435_761) % frames.len() as u64) as usize].clone();
    match load::h2_unary(ch, "/partnership.v1.ReportService/GetPartnershipReport", frame).await {
        Ok(0) => Err(tonic::Status::data_loss("empty report")),
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::ResourceExhausted => {
            let delay = status
                .get_error_details()
                .retry_info()
                .and_then(|r| r.retry_delay)
                .unwrap_or(Duration::from_millis(100));
            tokio::time::sleep(delay).await;
            Err(status)
        }
        Err(status) => Err(status),
    }
}

/// The framed GetPartnershipReport request of each partnership, 2026Q3.
pub fn report_frames(ids: &[String]) -> Vec<bytes::Bytes> {
    ids.iter()
        .map(|id| {
            load::grpc_frame(&pb::GetPartnershipReportRequest {
                partnership: id.clone(),
                period: "2026Q3".into(),
                ..Default::default()
            })
        })
        .collect()
}

pub fn shed(r: &LoadResult) -> u64 {
    r.errors.get("ResourceExhausted").copied().unwrap_or(0)
}

pub fn other_errors(r: &LoadResult) -> u64 {
    r.error_count() - shed(r)
}

/// What the runs at one overload measured.
#[derive(Debug, Default)]
struct Overloaded {
    goodput: Vec<f64>,
    p99: Vec<f64>,
    shed_share: Vec<f64>,
    other_errors: u64,
    /// Those errors by gRPC code, so a figure with errors says which.
    other_codes: std::collections::BTreeMap<String, u64>,
    /// The server's CPU time over the run's length.
    busy: Vec<f64>,
    /// The generator's CPU time over the run's length.
    generator: Vec<f64>,
}

/// Report reads at 64 streams (capacity, unloaded p99), then at each of `overloads`
/// streams, `runs` times; the server is the one `target` names, its reports warm.
pub async fn overload(
    target: String,
    ids: Arc<Vec<String>>,
    overloads: Vec<usize>,
    runs: usize,
    duration: Duration,
    server_pid: u32,
    peak_rss: impl Fn() -> f64,
) -> anyhow::Result<Vec<Row>> {
    let mut capacity = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut loaded: Vec<Overloaded> = overloads.iter().map(|_| Overloaded::default()).collect();
    let mut recovered = Vec::new();
    let frames = Arc::new(report_frames(&ids));
    for run in 0..runs {
        let (t, frames, ov) = (target.clone(), frames.clone(), overloads.clone());
        let (cap, over, rec) = load::on_own_thread(move || async move {
            let call = move |ch, seq| report_call(ch, frames.clone(), seq);
            // The server's CPU per answered call, its busy share of the run, and the
            // generator's (this process's) busy share, which says whether the load
            // offered was the load meant.
            let measured = async |chans: &[load::H2Channel], streams: usize| {
                let (c0, g0) =
                    (cpu_seconds(server_pid).unwrap_or(0.0), cpu_seconds(std::process::id()).unwrap_or(0.0));
                let r = load::closed_loop(chans, streams, duration, call.clone()).await;
                let cpu = cpu_seconds(server_pid).unwrap_or(0.0) - c0;
                let generator = cpu_seconds(std::process::id()).unwrap_or(0.0) - g0;
                let per_call_us = cpu * 1e6 / r.ok.max(1) as f64;
                let busy = (cpu / r.elapsed.as_secs_f64(), generator / r.elapsed.as_secs_f64());
                (r, per_call_us, busy)
            };
            let chans = load::h2_channels(&t, load::connections_for(64)).await?;
            let cap = measured(&chans, 64).await;
            let mut over = Vec::new();
            for &streams in &ov {
                // A connection per 64 streams: under the per-connection stream limit.
                let chans = load::h2_channels(&t, streams.div_ceil(64)).await?;
                over.push(measured(&chans, streams).await);
            }
            // Load gone: the first half second at 64 streams again.
            let rec = load::closed_loop(&chans, 64, Duration::from_millis(500), call.clone()).await;
            Ok((cap, over, rec))
        })
        .await?;
        let (cap, cap_cpu, cap_busy) = cap;
        crate::say(format!(
            "overload run {run}: capacity {:.0}/s p99 {:.3} ms ({cap_cpu:.0} us server CPU a call, busy {:.2}, generator busy {:.2}); {}",
            cap.per_second(),
            cap.quantile_ms(0.99),
            cap_busy.0,
            cap_busy.1,
            over.iter()
                .zip(&overloads)
                .map(|((r, cpu, busy), s)| format!(
                    "{s} streams goodput {:.0}/s shed {} p99 {:.3} ms ({cpu:.0} us, busy {:.2}, generator busy {:.2})",
                    r.per_second(),
                    shed(r),
                    r.quantile_ms(0.99),
                    busy.0,
                    busy.1
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        capacity.0.push(cap.per_second());
        capacity.1.push(cap.quantile_ms(0.99));
        capacity.2.push(cap_busy.0);
        capacity.3.push(cap_busy.1);
        for (i, (r, _, busy)) in over.iter().enumerate() {
            loaded[i].busy.push(busy.0);
            loaded[i].generator.push(busy.1);
            let attempts = (r.ok + r.error_count()) as f64;
            loaded[i].goodput.push(r.per_second());
            loaded[i].p99.push(r.quantile_ms(0.99));
            loaded[i].shed_share.push(shed(r) as f64 / attempts.max(1.0));
            loaded[i].other_errors += other_errors(r) + other_errors(&cap);
            for (code, n) in
                r.errors.iter().chain(cap.errors.iter()).filter(|(c, _)| *c != "ResourceExhausted")
            {
                *loaded[i].other_codes.entry(code.clone()).or_default() += n;
            }
        }
        recovered.push(rec.per_second());
    }
    let cap_rps = Figure::of(capacity.0);
    let cap_p99 = Figure::of(capacity.1);
    let mut rows = Vec::new();
    for (i, streams) in overloads.iter().enumerate() {
        let Overloaded {
            goodput: rps,
            p99,
            shed_share: share,
            other_errors: errors,
            other_codes,
            busy,
            generator,
        } = &loaded[i];
        let p99 = Figure::of(p99.clone());
        let within = p99.median <= 5.0 * cap_p99.median;
        let row = Row::new(
            format!("GetPartnershipReport offered at {streams} streams ({}x the capacity load), callers honour RetryInfo", streams / 64),
            "req/s",
            Figure::of(rps.clone()),
        )
        .anchor("capacity: 64 streams, same server, same run", cap_rps.clone())
        .note("admitted p99 ms", format!("{:.3}", p99.median))
        .note("unloaded p99 ms", format!("{:.3}", cap_p99.median))
        .note("shed share", format!("{:.2}", Figure::of(share.clone()).median))
        .note("server busy", format!("{:.2}", Figure::of(busy.clone()).median))
        .note("server busy at capacity", format!("{:.2}", Figure::of(capacity.2.clone()).median))
        .note("generator busy", format!("{:.2}", Figure::of(generator.clone()).median))
        .note("generator busy at capacity", format!("{:.2}", Figure::of(capacity.3.clone()).median))
        .note("errors other than shed", errors);
        let row = if other_codes.is_empty() {
            row
        } else {
            let codes: Vec<String> = other_codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            row.note("their codes", codes.join(", "))
        };
        let ratio_ok = row.ratio.is_some_and(|r| r >= 0.9);
        rows.push(row.target(
            ">= 0.9 of capacity; admitted p99 <= 5x unloaded; no other error",
            Some(ratio_ok && within && *errors == 0),
        ));
    }
    rows.push(
        Row::new(
            "GetPartnershipReport in the first 0.5 s after the overload",
            "req/s",
            Figure::of(recovered),
        )
        .anchor("capacity", cap_rps)
        .target("recovers at once", None),
    );
    let rss = peak_rss();
    rows.push(
        Row::new("peak server RSS during the overload runs", "MiB", Figure::of(vec![rss]))
            .target("<= 256 MiB", Some(rss <= 256.0)),
    );
    Ok(rows)
}

/// Streams the records of `partnerships` split round-robin over `streams` concurrent
/// IngestRecords streams (stream `s` to `targets[s % targets.len()]`), batches of
/// `batch`; returns the time, records acknowledged and non-OK answers.
pub async fn concurrent_ingest(
    targets: &[String],
    synth: &Synth,
    partnerships: usize,
    streams: usize,
    batch: usize,
) -> anyhow::Result<(Duration, u64, u64)> {
    let mut groups: Vec<Vec<pb::Record>> = (0..streams).map(|_| Vec::new()).collect();
    for p in 0..partnerships {
        groups[p % streams].extend(synth.records_of(p));
    }
    let mut channels = Vec::new();
    for t in targets {
        channels.push(partnership_metrics::configuration::ClientArgs::plain(t).channel().await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(s, records)| {
            let ch = channels[s % channels.len()].clone();
            tokio::spawn(async move {
                let mut client = SubmissionServiceClient::new(ch).max_encoding_message_size(64 << 20);
                let batches: Vec<pb::IngestRecordsRequest> = records
                    .chunks(batch)
                    .enumerate()
                    .map(|(i, c)| pb::IngestRecordsRequest {
                        request_id: format!("cc-{s}-{i}"),
                        records: c.to_vec(),
                        validate_only: false,
                    })
                    .collect();
                let (mut ok, mut bad) = (0u64, 0u64);
                match client.ingest_records(tokio_stream::iter(batches)).await {
                    Ok(r) => {
                        let mut acks = r.into_inner();
                        loop {
                            match acks.message().await {
                                Ok(Some(ack)) => match ack.result {
                                    Some(Ack::Accepted(a)) => ok += a.record_count as u64,
                                    _ => bad += 1,
                                },
                                Ok(None) => break,
                                Err(_) => {
                                    bad += 1;
                                    break;
                                }
                            }
                        }
                    }
                    Err(_) => bad += 1,
                }
                (ok, bad)
            })
        })
        .collect();
    let (mut ok, mut bad) = (0, 0);
    for t in tasks {
        match t.await {
            Ok((o, b)) => {
                ok += o;
                bad += b;
            }
            Err(_) => bad += 1,
        }
    }
    Ok((started.elapsed(), ok, bad))
}

/// The filters a page of ListRecords is timed under.
pub fn list_filters(synth: &Synth) -> Vec<(&'static str, pb::ListRecordsRequest)> {
    let mid = synth.config.partnerships / 2;
    let partnership = synth.partnership_id(mid);
    let agency = synth.member_id(mid, 1);
    let survey = pb::RecordKind::SurveyResponse as i32;
    vec![
        ("no filter", pb::ListRecordsRequest::default()),
        ("partnership", pb::ListRecordsRequest { partnership: partnership.clone(), ..Default::default() }),
        ("reporting agency", pb::ListRecordsRequest { agency, ..Default::default() }),
        ("kind", pb::ListRecordsRequest { kind: survey, ..Default::default() }),
        ("partnership and kind", pb::ListRecordsRequest { partnership, kind: survey, ..Default::default() }),
        (
            "kind and period",
            pb::ListRecordsRequest {
                kind: survey,
                start_period: "2026Q3".into(),
                end_period: "2026Q3".into(),
                ..Default::default()
            },
        ),
    ]
}

/// Milliseconds per page (of 50), over up to `pages` pages of the listing.
pub async fn page_times(
    target: &str,
    request: pb::ListRecordsRequest,
    pages: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut client = SubmissionServiceClient::new(
        partnership_metrics::configuration::ClientArgs::plain(target).channel().await?,
    )
    .max_decoding_message_size(64 << 20);
    let mut times = Vec::new();
    let mut token = String::new();
    for _ in 0..pages {
        let t0 = Instant::now();
        let page = client
            .list_records(pb::ListRecordsRequest {
                page_token: token.clone(),
                page_size: 50,
                ..request.clone()
            })
            .await?
            .into_inner();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(!page.records.is_empty(), "an empty page");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(times)
}
