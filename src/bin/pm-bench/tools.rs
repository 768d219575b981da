//! The data team's commands, `partnership-metrics import` and `export`, run as a user
//! runs them (a process of the release binary against a release server), beside the
//! in-process gRPC calls they are built on, each on a fresh server in the same run.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use partnership_metrics::{
    cli::{client::ApiChannel, examples, load as loader, synth},
    pb::{self, registry_service_client::RegistryServiceClient, report_service_client::ReportServiceClient},
};

use crate::{
    Server, fresh_dir, say,
    server::{Binary, cpu_seconds},
    sqlite_url,
    stats::{Figure, Row},
};

/// Records per IngestRecords batch, for the import and its anchor alike.
const BATCH: usize = 1000;
/// Entries per batch create: the contract's limit, as the importer sends them.
const REGISTRY_CHUNK: usize = 1000;
const PERIOD: &str = "2026Q3";

/// One run of the CLI: wall time from spawn to exit, the CPU time it used (sampled
/// every few ms until it exits) and what it printed.
struct Timed {
    wall: Duration,
    cpu: f64,
    stdout: String,
}

/// Runs `partnership-metrics ARGS...` with output to files under `logs` (so neither
/// pipe can fill and stall it); fails with its standard error's tail if it fails.
async fn run_cli(bin: &Path, args: &[String], logs: &Path, name: &str) -> anyhow::Result<Timed> {
    let out_path = logs.join(format!("{name}.stdout"));
    let err_path = logs.join(format!("{name}.stderr"));
    let out = std::fs::File::create(&out_path)?;
    let err = std::fs::File::create(&err_path)?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let mut cpu = 0.0;
    let status = loop {
        if let Some(c) = cpu_seconds(pid) {
            cpu = c;
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = t0.elapsed();
    if !status.success() {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("`{} {}` exited with {status}:\n{}", bin.display(), args.join(" "), tail.join("\n"));
    }
    let stdout = std::fs::read_to_string(&out_path)?;
    Ok(Timed { wall, cpu, stdout })
}

/// The parts of `import --json`'s summary checked here.
#[derive(Debug, serde::Deserialize)]
struct ImportSummary {
    agencies_created: u64,
    partnerships_created: u64,
    memberships_created: u64,
    records: u64,
    inserted: u64,
    rejected: u64,
    replayed_batches: u64,
    problems: u64,
}

async fn import(
    bin: &Path,
    target: &str,
    paths: &[PathBuf],
    logs: &Path,
    name: &str,
) -> anyhow::Result<(Timed, ImportSummary)> {
    let mut args = vec![
        "import".to_string(),
        "--target".to_string(),
        target.to_string(),
        "--batch-size".to_string(),
        BATCH.to_string(),
        "--json".to_string(),
    ];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let timed = run_cli(bin, &args, logs, name).await?;
    let summary: ImportSummary = serde_json::from_str(&timed.stdout)
        .with_context(|| format!("reading the summary of {name}: {:?}", timed.stdout))?;
    anyhow::ensure!(
        summary.problems == 0 && summary.rejected == 0 && summary.replayed_batches == 0,
        "{name}: {summary:?}"
    );
    Ok((timed, summary))
}

/// The registry through the batch creates, `REGISTRY_CHUNK` entries a call, one call
/// at a time (as the importer sends them); returns the entries created.
async fn batch_registry(channel: ApiChannel, synth: &synth::Synth) -> anyhow::Result<usize> {
    let mut client = RegistryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let refused = |what: &str, s: tonic::Status| {
        anyhow::anyhow!("batch create of {what} refused: {}", partnership_metrics::cli::client::describe(&s))
    };
    let mut created = 0;
    // An entry's own request id is not sent: the batch's covers it.
    let agencies: Vec<pb::CreateAgencyRequest> =
        synth.agency_requests().map(|r| pb::CreateAgencyRequest { request_id: String::new(), ..r }).collect();
    for (i, chunk) in agencies.chunks(REGISTRY_CHUNK).enumerate() {
        let r = client
            .batch_create_agencies(pb::BatchCreateAgenciesRequest {
                requests: chunk.to_vec(),
                request_id: format!("bench-agencies-{i}"),
                validate_only: false,
            })
            .await
            .map_err(|s| refused("agencies", s))?;
        created += r.into_inner().agencies.len();
    }
    let partnerships: Vec<pb::CreatePartnershipRequest> = synth
        .partnership_requests()
        .map(|r| pb::CreatePartnershipRequest { request_id: String::new(), ..r })
        .collect();
    for (i, chunk) in partnerships.chunks(REGISTRY_CHUNK).enumerate() {
        let r = client
            .batch_create_partnerships(pb::BatchCreatePartnershipsRequest {
                requests: chunk.to_vec(),
                request_id: format!("bench-partnerships-{i}"),
                validate_only: false,
            })
            .await
            .map_err(|s| refused("partnerships", s))?;
        created += r.into_inner().partnerships.len();
    }
    let memberships: Vec<pb::CreateMembershipRequest> = synth
        .membership_requests()
        .map(|r| pb::CreateMembershipRequest { request_id: String::new(), ..r })
        .collect();
    for (i, chunk) in memberships.chunks(REGISTRY_CHUNK).enumerate() {
        let r = client
            .batch_create_memberships(pb::BatchCreateMembershipsRequest {
                parent: "partnerships/-".into(),
                requests: chunk.to_vec(),
                request_id: format!("bench-memberships-{i}"),
                validate_only: false,
            })
            .await
            .map_err(|s| refused("memberships", s))?;
        created += r.into_inner().memberships.len();
    }
    Ok(created)
}

/// Every report of `period` through ExportReports, read and discarded: the time and
/// the number of reports.
pub async fn export_in_process(target: &str, period: &str) -> anyhow::Result<(Duration, usize)> {
    let mut client =
        ReportServiceClient::new(loader::connect(target).await?).max_decoding_message_size(64 << 20);
    let t0 = Instant::now();
    let mut stream = client
        .export_reports(pb::ExportReportsRequest { period: period.into(), ..Default::default() })
        .await?
        .into_inner();
    let mut reports = 0usize;
    while let Some(r) = stream.message().await? {
        std::hint::black_box(&r);
        reports += 1;
    }
    Ok((t0.elapsed(), reports))
}

fn server_cpu(server: &Server) -> f64 {
    cpu_seconds(server.pid()).unwrap_or(f64::NAN)
}

/// This process's CPU seconds: the anchor's client side (with the RSS sampler's
/// thread, a few ms a second).
fn own_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(f64::NAN)
}

/// The figures of `--phases tools`: import of CSV and NDJSON beside IngestRecords of
/// the same records, the registry through the batch creates beside one create per
/// entry, and `export --format parquet` beside ExportReports on the loaded database
/// `data`; `keep_files` leaves the files written under `work` (for profiling the
/// importer). `records` sizes the import's data set ([`crate::Scale::tools_records`]).
#[allow(clippy::too_many_arguments)]
pub async fn rows(
    bin: &Binary,
    work: &Path,
    data: &Path,
    records: usize,
    partnerships: usize,
    runs: usize,
    keep_files: bool,
    next_port: &mut impl FnMut() -> u16,
) -> anyhow::Result<Vec<Row>> {
    let cli = bin.path.clone();
    let config = synth::SynthConfig::scaled(records);
    let synth = synth::Synth::new(config);
    let files = work.join("tools-files");
    let logs = work.join("tools-logs");
    fresh_dir(&files)?;
    fresh_dir(&logs)?;
    // The files are written once, outside every timed region.
    let t0 = Instant::now();
    examples::write(&files, config)?;
    let size = |dir: &Path| -> anyhow::Result<u64> {
        let mut n = 0;
        for e in std::fs::read_dir(dir)? {
            n += e?.metadata()?.len();
        }
        Ok(n)
    };
    let (csv, ndjson) = (files.join("csv"), files.join("ndjson"));
    let (csv_mib, ndjson_mib) = (size(&csv)? as f64 / 1048576.0, size(&ndjson)? as f64 / 1048576.0);
    say(format!(
        "wrote the tools data set ({} partnerships) as CSV ({csv_mib:.0} MiB) and NDJSON ({ndjson_mib:.0} MiB) in {:.1} s",
        config.partnerships,
        t0.elapsed().as_secs_f64()
    ));
    const REGISTRY: [&str; 3] = ["agencies", "partnerships", "memberships"];
    let registry_files = |dir: &Path, ext: &str| -> Vec<PathBuf> {
        REGISTRY.iter().map(|s| dir.join(format!("{s}.{ext}"))).collect()
    };
    let mut csv_records: Vec<PathBuf> = std::fs::read_dir(&csv)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| !REGISTRY.contains(&s)))
        .collect();
    csv_records.sort();
    let formats = [
        ("CSV", registry_files(&csv, "csv"), csv_records, csv_mib),
        ("NDJSON", registry_files(&ndjson, "ndjson"), vec![ndjson.join("records.ndjson")], ndjson_mib),
    ];

    #[derive(Default)]
    struct Import {
        rate: Vec<f64>,
        cli_cpu: Vec<f64>,
        server_cpu: Vec<f64>,
        wall: Vec<f64>,
        registry_rate: Vec<f64>,
    }
    let mut imports: Vec<Import> = formats.iter().map(|_| Import::default()).collect();
    let (mut anchor, mut anchor_server_cpu, mut anchor_client_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unary, mut batched) = (Vec::new(), Vec::new());
    let (mut export_cli, mut export_rpc, mut export_cpu, mut parquet_mib) =
        (Vec::new(), Vec::new(), Vec::new(), 0.0);
    let mut n_records = 0u64;
    let mut n_entries = 0usize;
    for run in 0..runs {
        // The anchor: the registry one create at a time (the unary figure), then the
        // records through cli::load's IngestRecords stream.
        let dir = work.join(format!("tools-anchor-{run}"));
        fresh_dir(&dir)?;
        let server = Server::start(bin, &sqlite_url(&dir), next_port()).await?;
        let channel = loader::connect(&server.target).await?;
        let t = Instant::now();
        let mut stats = loader::load_registry(channel.clone(), &synth).await?;
        let registry_time = t.elapsed();
        n_entries = stats.agencies + stats.partnerships + stats.memberships;
        unary.push(n_entries as f64 / registry_time.as_secs_f64());
        let (cpu0, own0) = (server_cpu(&server), own_cpu());
        let t = Instant::now();
        loader::load_records_limited(channel, synth.clone(), BATCH, usize::MAX, &mut stats).await?;
        let elapsed = t.elapsed();
        anchor_server_cpu.push(server_cpu(&server) - cpu0);
        anchor_client_cpu.push(own_cpu() - own0);
        server.stop()?;
        std::fs::remove_dir_all(&dir)?;
        n_records = stats.records;
        anchor.push(stats.records as f64 / elapsed.as_secs_f64());
        say(format!(
            "tools run {run}: IngestRecords anchor {:.0} records/s; unary registry {:.0} entries/s",
            anchor[run], unary[run]
        ));

        // The import, as a user runs it: the registry files first, then the records
        // alone, so the records' time is not mixed with the registry's.
        for ((name, registry, record_files, _), figure) in formats.iter().zip(imports.iter_mut()) {
            let dir = work.join(format!("tools-import-{name}-{run}"));
            fresh_dir(&dir)?;
            let server = Server::start(bin, &sqlite_url(&dir), next_port()).await?;
            let (reg, s) =
                import(&cli, &server.target, registry, &logs, &format!("{name}-registry-{run}")).await?;
            let entries = s.agencies_created + s.partnerships_created + s.memberships_created;
            anyhow::ensure!(
                entries as usize == n_entries,
                "{name}: {entries} registry entries of {n_entries}"
            );
            let cpu0 = server_cpu(&server);
            let (rec, s) =
                import(&cli, &server.target, record_files, &logs, &format!("{name}-records-{run}")).await?;
            figure.server_cpu.push(server_cpu(&server) - cpu0);
            server.stop()?;
            std::fs::remove_dir_all(&dir)?;
            anyhow::ensure!(
                s.records == n_records && s.inserted == n_records,
                "{name}: imported {} records ({} inserted) of {n_records}",
                s.records,
                s.inserted
            );
            figure.rate.push(s.records as f64 / rec.wall.as_secs_f64());
            figure.cli_cpu.push(rec.cpu);
            figure.wall.push(rec.wall.as_secs_f64() + reg.wall.as_secs_f64());
            figure.registry_rate.push(entries as f64 / reg.wall.as_secs_f64());
            say(format!(
                "tools run {run}: import {name} records {:.0} records/s ({:.1} s, CLI CPU {:.1} s, server CPU {:.1} s); registry {:.0} entries/s",
                figure.rate[run],
                rec.wall.as_secs_f64(),
                rec.cpu,
                figure.server_cpu[run],
                figure.registry_rate[run]
            ));
        }

        // The registry through the batch creates, in process.
        let dir = work.join(format!("tools-batch-{run}"));
        fresh_dir(&dir)?;
        let server = Server::start(bin, &sqlite_url(&dir), next_port()).await?;
        let channel = loader::connect(&server.target).await?;
        let t = Instant::now();
        let created = batch_registry(channel, &synth).await?;
        let elapsed = t.elapsed();
        server.stop()?;
        std::fs::remove_dir_all(&dir)?;
        anyhow::ensure!(created == n_entries, "batch creates made {created} of {n_entries} entries");
        batched.push(created as f64 / elapsed.as_secs_f64());
        say(format!("tools run {run}: batch registry {:.0} entries/s", batched[run]));

        // Export of the loaded database: the stream in process and the CLI's Parquet,
        // each on a fresh server, first one then the other by turns.
        for cli_first in [run % 2 == 1, run % 2 == 0] {
            let server = Server::start(bin, &sqlite_url(data), next_port()).await?;
            if cli_first {
                let out = work.join("tools-export.parquet");
                let args: Vec<String> = [
                    "export",
                    "--target",
                    &server.target,
                    "--period",
                    PERIOD,
                    "--format",
                    "parquet",
                    "--out",
                    &out.display().to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let timed = run_cli(&cli, &args, &logs, &format!("export-{run}")).await?;
                server.stop()?;
                parquet_mib = std::fs::metadata(&out)?.len() as f64 / 1048576.0;
                std::fs::remove_file(&out)?;
                export_cli.push(partnerships as f64 / timed.wall.as_secs_f64());
                export_cpu.push(timed.cpu);
            } else {
                let (t, reports) = export_in_process(&server.target, PERIOD).await?;
                server.stop()?;
                anyhow::ensure!(reports == partnerships, "export sent {reports} of {partnerships} reports");
                export_rpc.push(reports as f64 / t.as_secs_f64());
            }
        }
        say(format!(
            "tools run {run}: export parquet {:.0} reports/s (CLI CPU {:.2} s), ExportReports {:.0} reports/s",
            export_cli[run], export_cpu[run], export_rpc[run]
        ));
    }
    if !keep_files {
        std::fs::remove_dir_all(&files)?;
    }

    let anchor = Figure::of(anchor);
    let anchor_cpu = Figure::of(anchor_server_cpu).median;
    let anchor_client = Figure::of(anchor_client_cpu).median;
    let mut rows = Vec::new();
    for ((name, _, _, mib), f) in formats.iter().zip(imports) {
        let row = Row::new(
            format!("`partnership-metrics import` of the {name} files, records only (registry imported first), batches of {BATCH}"),
            "records/s",
            Figure::of(f.rate),
        )
        .anchor(
            &format!("IngestRecords of the same records in process (cli::load), batches of {BATCH}, fresh server"),
            anchor.clone(),
        )
        .note("records", n_records)
        .note("files MiB", format!("{mib:.0}"))
        .note("import CPU s", format!("{:.1}", Figure::of(f.cli_cpu).median))
        .note("server CPU s", format!("{:.1}", Figure::of(f.server_cpu).median))
        .note("server CPU s in the anchor", format!("{anchor_cpu:.1}"))
        .note("client CPU s in the anchor", format!("{anchor_client:.1}"))
        .note("whole import with registry s", format!("{:.1}", Figure::of(f.wall).median))
        .note("registry through the CLI entries/s", format!("{:.0}", Figure::of(f.registry_rate).median));
        rows.push(row.ratio_at_least(0.7));
    }
    rows.push(
        Row::new(
            format!(
                "registry load through BatchCreateAgencies/Partnerships/Memberships, {REGISTRY_CHUNK} a call"
            ),
            "entries/s",
            Figure::of(batched),
        )
        .anchor("one unary create per entry, 16 in flight (cli::load::load_registry)", Figure::of(unary))
        .note("entries", n_entries)
        .target("(speedup: the ratio)", None),
    );
    rows.push(
        Row::new(
            format!("`partnership-metrics export --format parquet` {PERIOD}, all partnerships"),
            "reports/s",
            Figure::of(export_cli),
        )
        .anchor("ExportReports read and discarded in process, same database", Figure::of(export_rpc))
        .note("partnerships", partnerships)
        .note("Parquet MiB", format!("{parquet_mib:.2}"))
        .note("export CPU s", format!("{:.2}", Figure::of(export_cpu).median))
        .ratio_at_least(0.7),
    );
    Ok(rows)
}
