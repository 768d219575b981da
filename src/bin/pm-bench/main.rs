//! `pm-bench`: the benchmark harness. Generates the synthetic data set (the demo's
//! generator), starts release servers on 127.0.0.1, measures ingest, report reads,
//! export, memory and start-up, each beside an anchor measured in the same run, and
//! writes `bench/results/<date>-<scale>.json` and the scale's table in BENCHMARKS.md.
//!
//!     cargo build --release --bins && target/release/pm-bench --scale medium

mod anchors;
mod auth;
mod edge;
mod load;
mod pg;
mod server;
mod stats;
mod tools;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use partnership_metrics::{
    cli::{load as loader, synth},
    configuration::ClientArgs,
    domain::{Period, access::Role},
    pb::{self, report_service_client::ReportServiceClient},
};
use serde::Serialize;
use server::Server;
use stats::{Figure, Row};
use tonic_health::pb::HealthCheckRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scale {
    /// About 100k records: a quick look.
    Small,
    /// About 1M records.
    Medium,
    /// About 10M records.
    Large,
}

impl Scale {
    fn records(self) -> usize {
        match self {
            Scale::Small => 100_000,
            Scale::Medium => 1_000_000,
            Scale::Large => 10_000_000,
        }
    }

    /// Records written in each ingest run: the whole set up to 1M, then a 1M slice
    /// (the whole large set is loaded once, and that load is reported too).
    fn ingest_records(self) -> usize {
        self.records().min(1_000_000)
    }

    /// Records in the data set the tools phase writes as files and imports: the
    /// ingest runs' number, but only 20k at `small`, whose smoke run in CI (a debug
    /// build, default phases) must stay about a minute.
    fn tools_records(self) -> usize {
        match self {
            Scale::Small => 20_000,
            _ => self.ingest_records(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Medium => "medium",
            Scale::Large => "large",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "Benchmarks Partnership Metrics against anchors measured in the same run.")]
struct Args {
    #[arg(long, value_enum, default_value_t = Scale::Small)]
    scale: Scale,
    /// Runs per figure (the median is reported, with min and max).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per read-load run.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// PostgreSQL server for the PostgreSQL ingest figures (a database is created and
    /// dropped per run); `none` skips them.
    #[arg(long, env = "PM_BENCH_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Where databases are built.
    #[arg(long, default_value = "bench/work")]
    work_dir: PathBuf,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    /// The Markdown file whose table for this scale is rewritten; `none` to skip.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: String,
    /// Concurrent streams for the read figures.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    streams: Vec<usize>,
    /// First port to use.
    #[arg(long, default_value_t = 50100)]
    port: u16,
    /// The measurements to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ingest,dataset,startup,export,reads,auth,overload,concurrent,list,tools,postgres"
    )]
    phases: Vec<Phase>,
    /// Load about this many records instead of the scale's number (smoke runs).
    #[arg(long)]
    records: Option<usize>,
    /// Keep the loaded data set under the work directory (and the PostgreSQL reads'
    /// database, `pm_bench_pg_reads_<scale>`) and reuse it next time, and keep the
    /// tools phase's files (for profiling one phase; the published figures
    /// load it afresh).
    #[arg(long)]
    reuse_dataset: bool,
    /// The server's `--worker-threads`: 1 (a single-threaded runtime) is what measured
    /// best on a two-core machine shared with the load generator; `0` leaves the
    /// server's default of one thread per core.
    #[arg(long, default_value_t = 1)]
    server_threads: u16,
    /// `KEY=VALUE` set in every server's environment (e.g. PM_MAX_IN_FLIGHT=128), to
    /// try settings; repeat for several. Recorded in the results.
    #[arg(long, value_parser = parse_env)]
    server_env: Vec<(String, String)>,
    /// Pin every server to these CPUs (`taskset -c` list, e.g. `1`), so that a
    /// figure is measured against a server with cores of its own.
    #[arg(long)]
    server_cpus: Option<String>,
    /// Pin this process (the load generators and anchors) to these CPUs, e.g. `0`.
    #[arg(long)]
    client_cpus: Option<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    Ingest,
    Dataset,
    Startup,
    Export,
    Reads,
    /// Report reads and ingest with JWT authentication, beside the same without.
    Auth,
    /// Report reads offered at 5x and 30x the capacity load.
    Overload,
    /// Concurrent IngestRecords streams on PostgreSQL, one and two replicas.
    Concurrent,
    /// One ListRecords page under each filter, SQLite and PostgreSQL.
    List,
    /// PostgreSQL as the reads' backend: ExportReports beside a plain SELECT of the
    /// same rows, and report reads at 64 streams with the cache warm and off.
    Postgres,
    /// The data team's commands: `import` of CSV and NDJSON beside IngestRecords, the
    /// registry through the batch creates beside unary creates, and `export --format
    /// parquet` beside ExportReports.
    Tools,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    memory_gib: f64,
    cpu: String,
    kernel: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        // The machine's cores, not this process's: --client-cpus narrows the latter.
        cores: std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
    }
}

#[derive(Debug, Serialize)]
struct Results {
    scale: Scale,
    date: String,
    commit: String,
    machine: Machine,
    records: usize,
    partnerships: usize,
    ingest_records_per_run: usize,
    runs: usize,
    server_threads: u16,
    /// `scale`, or `scale-phase-phase` for a run of some phases only: the name of its
    /// JSON file and of its section in BENCHMARKS.md, so a partial run never
    /// replaces a whole one.
    label: String,
    phases: Vec<Phase>,
    server_env: Vec<(String, String)>,
    server_cpus: Option<String>,
    client_cpus: Option<String>,
    rows: Vec<Row>,
}

/// The phases a plain `pm-bench` runs.
const ALL_PHASES: [Phase; 6] =
    [Phase::Ingest, Phase::Dataset, Phase::Startup, Phase::Export, Phase::Reads, Phase::Auth];

fn fresh_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("clearing {}", path.display()))?;
    }
    std::fs::create_dir_all(path)?;
    Ok(())
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("pm.db").display())
}

/// A PostgreSQL database of its own, dropped with the value.
struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    async fn create(admin: &str, name: &str) -> anyhow::Result<PgDatabase> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        Ok(PgDatabase::existing(admin, name))
    }

    fn existing(admin: &str, name: &str) -> PgDatabase {
        PgDatabase { admin: admin.to_string(), name: name.to_string() }
    }

    /// The records a kept database holds, or None when there is none to reuse.
    async fn loaded_records(admin: &str, name: &str) -> anyhow::Result<Option<u64>> {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let db = PgDatabase::existing(admin, name);
        let mut conn = sqlx::PgConnection::connect(&db.url()).await?;
        let n: i64 = match sqlx::query("SELECT count(*) FROM records").fetch_one(&mut conn).await {
            Ok(row) => row.try_get(0)?,
            Err(_) => return Ok(None),
        };
        Ok((n > 0).then_some(n as u64))
    }

    fn url(&self) -> String {
        let base = self.admin.split('?').next().unwrap_or(&self.admin);
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        format!("{server}/{}", self.name)
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// Loads the registry, then streams the first `n` records in batches of `batch`;
/// returns the streaming time.
async fn ingest(
    server: &Server,
    synth: &synth::Synth,
    n: usize,
    batch: usize,
) -> anyhow::Result<(Duration, u64, (f64, f64))> {
    let channel = loader::connect(&server.target).await?;
    let mut stats = loader::load_registry(channel.clone(), synth).await?;
    // The CPU the records start from (`server::cpu_now`), the registry's left out.
    let cpu = server::cpu_now(server.pid());
    let started = Instant::now();
    loader::load_records_limited(channel, synth.clone(), batch, n, &mut stats).await?;
    Ok((started.elapsed(), stats.records, cpu))
}

pub fn say(msg: impl AsRef<str>) {
    eprintln!("[pm-bench] {}", msg.as_ref());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(cpus) = &args.client_cpus {
        // -a: every thread of this process, the runtime's workers included.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-cp", cpus, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "taskset could not pin pm-bench to CPUs {cpus}");
    }
    let bin = server::server_binary(args.server_threads, args.server_env.clone(), args.server_cpus.clone())?;
    let scale = args.scale;
    let records = args.records.unwrap_or(scale.records());
    let config = synth::SynthConfig::scaled(records);
    let synth = synth::Synth::new(config);
    let registry = anchors::registry(&synth);
    let n_ingest = scale.ingest_records().min(records);
    let runs = args.runs.max(1);
    let mut port = args.port;
    // Outgoing connections take ephemeral ports from this range too, so a port is
    // used only if it can be bound now.
    let mut next_port = || loop {
        port = port.checked_add(1).unwrap_or(50_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    };
    let work = args.work_dir.join(scale.name());
    let mut rows: Vec<Row> = Vec::new();
    say(format!(
        "scale {} : {} partnerships, about {} records; {} runs",
        scale.name(),
        config.partnerships,
        synth.estimated_record_count(),
        runs
    ));

    // The anchors' rows are computed once, before any timing.
    let anchor_rows = anchors::rows(&synth, &registry, n_ingest)?;

    let phase = |p: Phase| args.phases.contains(&p);
    // --- Ingest into SQLite, and the anchor -----------------------------------------
    for batch in [1_000usize, 10_000].into_iter().filter(|_| phase(Phase::Ingest)) {
        let (mut service, mut anchor, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let dir = work.join(format!("ingest-sqlite-{batch}-{run}"));
            fresh_dir(&dir)?;
            let server = Server::start(&bin, &sqlite_url(&dir), next_port()).await?;
            let (elapsed, n, _) = ingest(&server, &synth, n_ingest, batch).await?;
            peaks.push(server.peak_rss_mib());
            server.stop()?;
            service.push(n as f64 / elapsed.as_secs_f64());
            fresh_dir(&dir)?;
            let t = anchors::sqlite_ingest(&dir.join("anchor.db"), &registry, &anchor_rows, batch)?;
            anchor.push(anchor_rows.len() as f64 / t.as_secs_f64());
            std::fs::remove_dir_all(&dir)?;
            say(format!(
                "ingest sqlite batch {batch} run {run}: {:.0} records/s, anchor {:.0}",
                service[run], anchor[run]
            ));
        }
        let row = Row::new(
            format!("IngestRecords into SQLite, batches of {batch}"),
            "records/s",
            Figure::of(service),
        )
        .anchor("rusqlite prepared statements, same schema and rows", Figure::of(anchor))
        .note("server peak RSS MiB", format!("{:.0}", Figure::of(peaks).max));
        rows.push(row.ratio_at_least(0.5));
    }

    // --- Ingest into PostgreSQL, and the minimal-schema COPY anchor --------------------
    if args.postgres_url != "none" && phase(Phase::Ingest) {
        // Several streams split the records by partnership, as agencies would; the
        // anchor COPYs the same records over as many connections.
        let sub = synth::Synth::new(synth::SynthConfig::scaled(n_ingest));
        let sub_registry = anchors::registry(&sub);
        let sub_rows = anchors::rows(&sub, &sub_registry, usize::MAX)?;
        for (batch, streams) in [(1_000usize, 1usize), (10_000, 1), (1_000, 8), (10_000, 8)] {
            let (mut service, mut anchor, mut formats, mut bad) = (Vec::new(), Vec::new(), Vec::new(), 0);
            let (mut server_us, mut pg_us, mut wall_us, mut anchor_pg_us) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let anchor_set = if streams == 1 { &anchor_rows } else { &sub_rows };
            for run in 0..runs {
                let db = PgDatabase::create(
                    &args.postgres_url,
                    &format!("pm_bench_ingest_{batch}_{streams}_{run}"),
                )
                .await?;
                let server = Server::start(&bin, &db.url(), next_port()).await?;
                // Where the records' CPU went: the server, PostgreSQL (its share of a
                // record beside the anchor's says what the schema and statements
                // cost), and the rest of the run's length waiting.
                let (elapsed, n, cpu0) = if streams == 1 {
                    ingest(&server, &synth, n_ingest, batch).await?
                } else {
                    loader::load_registry(loader::connect(&server.target).await?, &sub).await?;
                    let cpu0 = server::cpu_now(server.pid());
                    let (t, n, b) = edge::concurrent_ingest(
                        std::slice::from_ref(&server.target),
                        &sub,
                        sub.config.partnerships,
                        streams,
                        batch,
                    )
                    .await?;
                    bad += b;
                    (t, n, cpu0)
                };
                let cpu1 = server::cpu_now(server.pid());
                let per_record = |s: f64| s * 1e6 / n.max(1) as f64;
                server_us.push(per_record(cpu1.0 - cpu0.0));
                pg_us.push(per_record(cpu1.1 - cpu0.1));
                wall_us.push(per_record(elapsed.as_secs_f64()));
                server.stop()?;
                db.drop_now().await?;
                service.push(n as f64 / elapsed.as_secs_f64());
                let db =
                    PgDatabase::create(&args.postgres_url, &format!("pm_bench_copy_{batch}_{streams}_{run}"))
                        .await?;
                let (t, format, copy_cpu) = pg::minimal_copy(&db.url(), anchor_set, batch, streams).await?;
                db.drop_now().await?;
                anchor.push(anchor_set.len() as f64 / t.as_secs_f64());
                anchor_pg_us.push(copy_cpu * 1e6 / anchor_set.len() as f64);
                formats.push(format.name());
                say(format!(
                    "ingest postgres batch {batch} streams {streams} run {run}: {:.0} records/s, anchor {:.0} ({})",
                    service[run],
                    anchor[run],
                    format.name()
                ));
            }
            formats.sort_unstable();
            formats.dedup();
            let row = Row::new(
                format!(
                    "IngestRecords into PostgreSQL, batches of {batch}, {streams} stream{}",
                    if streams == 1 { "" } else { "s" }
                ),
                "records/s",
                Figure::of(service),
            )
            .anchor(
                "COPY of the same keys and contents into (key PRIMARY KEY, content), a transaction per batch",
                Figure::of(anchor),
            )
            .note("records per run", anchor_set.len())
            .note("faster COPY format", formats.join("/"))
            .note("non-OK", bad)
            .note("us a record: wall", format!("{:.1}", Figure::of(wall_us).median))
            .note("server CPU", format!("{:.1}", Figure::of(server_us).median))
            .note("PostgreSQL CPU", format!("{:.1}", Figure::of(pg_us).median))
            .note("PostgreSQL CPU in the anchor", format!("{:.1}", Figure::of(anchor_pg_us).median));
            let met = row.ratio.is_some_and(|r| r >= 0.5) && bad == 0;
            rows.push(row.target(">= 0.5", Some(met)));
        }
    }

    // --- The whole data set into SQLite: the database the reads run on --------------
    let data = work.join("dataset");
    // Only these phases read the SQLite data set; a run of the PostgreSQL phases alone
    // skips its load, a quarter of an hour at large.
    let needs_data = [
        Phase::Dataset,
        Phase::Startup,
        Phase::Export,
        Phase::Tools,
        Phase::Reads,
        Phase::Auth,
        Phase::Overload,
        Phase::List,
    ]
    .into_iter()
    .any(phase);
    let reuse = args.reuse_dataset && data.join("pm.db").exists();
    let mut total_records = if !needs_data {
        synth.estimated_record_count() as u64
    } else if reuse {
        // A kept data set: what it holds, for the section's heading.
        rusqlite::Connection::open(data.join("pm.db"))
            .and_then(|c| c.query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0)))
            .context("counting the kept data set's records")? as u64
    } else {
        0
    };
    if needs_data && !reuse {
        fresh_dir(&data)?;
        let server = Server::start(&bin, &sqlite_url(&data), next_port()).await?;
        let channel = loader::connect(&server.target).await?;
        let mut load_stats = loader::load_registry(channel.clone(), &synth).await?;
        let stream_start = server.now();
        let t0 = Instant::now();
        loader::load_records(channel, synth.clone(), 10_000, &mut load_stats).await?;
        let load_time = t0.elapsed();
        let (first_half, second_half) = server.peak_halves_mib(stream_start);
        let stream_peak = server.peak_rss_mib();
        server.stop()?;
        total_records = load_stats.records;
        say(format!(
            "loaded {total_records} records in {:.1} s; peak RSS {stream_peak:.0} MiB",
            load_time.as_secs_f64()
        ));
        if phase(Phase::Dataset) {
            rows.push(
                Row::new(
                    "peak server RSS during one stream of the whole data set",
                    "MiB",
                    Figure::of(vec![stream_peak]),
                )
                .note("records", total_records)
                .note("records/s", format!("{:.0}", total_records as f64 / load_time.as_secs_f64()))
                .note("first half MiB", format!("{first_half:.0}"))
                .note("second half MiB", format!("{second_half:.0}"))
                .target(
                    "<= 256 MiB, flat",
                    Some(stream_peak <= 256.0 && second_half <= first_half * 1.25 + 8.0),
                ),
            );
        }
    }

    // --- Start-up to SERVING on the full database --------------------------------------
    let mut startups = Vec::new();
    for _ in (0..runs).filter(|_| phase(Phase::Startup)) {
        let server = Server::start(&bin, &sqlite_url(&data), next_port()).await?;
        startups.push(server.started.as_secs_f64() * 1000.0);
        server.stop()?;
    }
    if phase(Phase::Startup) {
        let startup = Figure::of(startups);
        let ok = startup.max <= 1000.0;
        rows.push(
            Row::new("time from start to SERVING on the whole database", "ms", startup)
                .target("<= 1000 ms", Some(ok)),
        );
    }

    // --- Export, and the scan anchor ---------------------------------------------------
    let period = Period::parse("2026Q3").map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut export, mut scan, mut export_rss) = (Vec::new(), Vec::new(), Vec::new());
    let mut scanned_rows = 0;
    for run in (0..runs).filter(|_| phase(Phase::Export)) {
        let server = Server::start(&bin, &sqlite_url(&data), next_port()).await?;
        let (elapsed, reports) = tools::export_in_process(&server.target, &period.to_string()).await?;
        export_rss.push(server.hwm_mib());
        server.stop()?;
        anyhow::ensure!(
            reports == config.partnerships,
            "export sent {reports} of {} reports",
            config.partnerships
        );
        let (n, t) = anchors::sqlite_scan(&data.join("pm.db"), period)?;
        scanned_rows = n;
        export.push(n as f64 / elapsed.as_secs_f64());
        scan.push(n as f64 / t.as_secs_f64());
        say(format!(
            "export run {run}: {reports} reports in {:.2} s; {:.0} rows/s, scan {:.0}",
            elapsed.as_secs_f64(),
            export[run],
            scan[run]
        ));
    }
    if phase(Phase::Export) {
        let row = Row::new(format!("ExportReports {period}, all partnerships"), "rows/s", Figure::of(export))
            .anchor("plain SELECT of the same rows, streamed", Figure::of(scan))
            .note("rows", scanned_rows);
        rows.push(row.ratio_at_least(0.5));
        let rss = Figure::of(export_rss);
        let ok = rss.max <= 256.0;
        rows.push(
            Row::new("peak server RSS during export", "MiB", rss)
                .note("partnerships", config.partnerships)
                .target("<= 256 MiB", Some(ok)),
        );
    }

    // --- The data team's commands, import and export, as processes -------------------
    if phase(Phase::Tools) {
        let n_tools = scale.tools_records().min(records);
        rows.extend(
            tools::rows(
                &bin,
                &work,
                &data,
                n_tools,
                config.partnerships,
                runs,
                args.reuse_dataset,
                &mut next_port,
            )
            .await?,
        );
    }

    // --- Report reads at 1, 16, 64, 256 streams, and Health/Check -----------------------
    if phase(Phase::Reads) {
        // A report service holds its working set: here every partnership's report.
        let cache = format!("{}", (config.partnerships * 16 / 1024).max(64));
        let server = Server::start_with(
            &bin,
            &sqlite_url(&data),
            next_port(),
            &[("PM_REPORT_CACHE_MIB", cache.as_str())],
        )
        .await?;
        let duration = Duration::from_secs_f64(args.duration_secs);
        let partnership_ids: Vec<String> =
            (0..config.partnerships).map(|p| synth.partnership_id(p)).collect();
        let ids = std::sync::Arc::new(partnership_ids);
        // Every report once first: the steady state a report service lives in.
        warm(&server.target, &ids).await?;
        let read_rows =
            report_reads(server.target.clone(), server.pid(), ids, args.streams.clone(), runs, duration)
                .await?;
        rows.extend(read_rows);
        server.stop()?;
    }

    // --- PostgreSQL as the reads' backend: export and report reads ----------------------
    if args.postgres_url != "none" && phase(Phase::Postgres) {
        let name = format!("pm_bench_pg_reads_{}", args.scale.name());
        let loaded = match args.reuse_dataset {
            true => PgDatabase::loaded_records(&args.postgres_url, &name).await?,
            false => None,
        };
        let (db, loaded_records) = match loaded {
            Some(n) => {
                say(format!("reusing {n} records in PostgreSQL database {name}"));
                (PgDatabase::existing(&args.postgres_url, &name), n)
            }
            None => {
                let db = PgDatabase::create(&args.postgres_url, &name).await?;
                let server = Server::start(&bin, &db.url(), next_port()).await?;
                let channel = loader::connect(&server.target).await?;
                let mut stats = loader::load_registry(channel.clone(), &synth).await?;
                let t0 = Instant::now();
                loader::load_records(channel, synth.clone(), 10_000, &mut stats).await?;
                server.stop()?;
                say(format!(
                    "loaded {} records into PostgreSQL in {:.1} s",
                    stats.records,
                    t0.elapsed().as_secs_f64()
                ));
                (db, stats.records)
            }
        };
        let (mut export, mut scan) = (Vec::new(), Vec::new());
        let mut scanned = 0;
        for run in 0..runs {
            let server = Server::start(&bin, &db.url(), next_port()).await?;
            let (elapsed, reports) = tools::export_in_process(&server.target, &period.to_string()).await?;
            server.stop()?;
            anyhow::ensure!(
                reports == config.partnerships,
                "export sent {reports} of {} reports",
                config.partnerships
            );
            let (n, t) = pg::scan(&db.url(), period).await?;
            scanned = n;
            export.push(n as f64 / elapsed.as_secs_f64());
            scan.push(n as f64 / t.as_secs_f64());
            say(format!(
                "postgres export run {run}: {reports} reports in {:.2} s; {:.0} rows/s, scan {:.0}",
                elapsed.as_secs_f64(),
                export[run],
                scan[run]
            ));
        }
        let row = Row::new(
            format!("ExportReports {period} on PostgreSQL, all partnerships"),
            "rows/s",
            Figure::of(export),
        )
        .anchor("plain SELECT of the same rows, streamed", Figure::of(scan))
        .note("rows", scanned)
        .note("records", loaded_records);
        rows.push(row.ratio_at_least(0.5));

        let duration = Duration::from_secs_f64(args.duration_secs);
        let ids: Arc<Vec<String>> =
            Arc::new((0..config.partnerships).map(|p| synth.partnership_id(p)).collect());
        let warm_cache = format!("{}", (config.partnerships * 16 / 1024).max(64));
        for (label, cache) in [("cache warm", warm_cache.as_str()), ("cache off", "0")] {
            let server =
                Server::start_with(&bin, &db.url(), next_port(), &[("PM_REPORT_CACHE_MIB", cache)]).await?;
            if cache != "0" {
                warm(&server.target, &ids).await?;
            }
            for mut row in
                report_reads(server.target.clone(), server.pid(), ids.clone(), vec![64], runs, duration)
                    .await?
            {
                row.measurement = format!("GetPartnershipReport on PostgreSQL at 64 streams, {label}");
                if cache == "0" {
                    // The cold figure is reported with what bounds it (BENCHMARKS.md).
                    row = row.target("(reported)", None);
                } else {
                    let met = row.ratio.is_some_and(|r| r >= 0.5);
                    row = row.target(">= 0.5", Some(met));
                }
                rows.push(row);
            }
            server.stop()?;
        }
        if !args.reuse_dataset {
            db.drop_now().await?;
        }
    }

    // --- What authentication costs: the same loads with and without JWTs -------------
    if phase(Phase::Auth) {
        let keys = auth::BenchKeys::new(&work.join("auth-keys"))?;
        let secured_env = keys.server_env();
        let cache = format!("{}", (config.partnerships * 16 / 1024).max(64));
        let streams = 64;
        let duration = Duration::from_secs_f64(args.duration_secs);
        let plan = Arc::new(auth::reader_plan(&synth, streams));
        let headers: Arc<Vec<tonic::metadata::AsciiMetadataValue>> = Arc::new(
            plan.iter()
                .map(|(agency, _)| keys.header(Some(agency), Role::Reader))
                .collect::<anyhow::Result<_>>()?,
        );
        let (mut open, mut secured, mut open_p99, mut secured_p99, mut errors) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
        for run in 0..runs {
            for with_auth in [false, true] {
                let mut env: Vec<(&str, &str)> = vec![("PM_REPORT_CACHE_MIB", cache.as_str())];
                if with_auth {
                    env.extend(secured_env.iter().map(|(k, v)| (*k, v.as_str())));
                }
                let server = Server::start_with(&bin, &sqlite_url(&data), next_port(), &env).await?;
                let (target, plan, headers) = (server.target.clone(), plan.clone(), headers.clone());
                let r = load::on_own_thread(move || async move {
                    let chans = load::channels(&target, streams).await?;
                    let call = move |ch, seq: u64| {
                        let s = (seq % streams as u64) as usize;
                        let (plan, headers) = (plan.clone(), headers.clone());
                        async move {
                            let request = pb::GetPartnershipReportRequest {
                                partnership: plan[s].1.clone(),
                                period: "2026Q3".into(),
                                ..Default::default()
                            };
                            let body = load::raw_unary(
                                ch,
                                "/partnership.v1.ReportService/GetPartnershipReport",
                                request,
                                with_auth.then(|| &headers[s]),
                            )
                            .await?;
                            if body.is_empty() {
                                Err(tonic::Status::data_loss("empty report"))
                            } else {
                                Ok(())
                            }
                        }
                    };
                    // A short first pass computes and caches the 64 reports.
                    load::closed_loop(&chans, streams, Duration::from_millis(300), call.clone()).await;
                    Ok(load::closed_loop(&chans, streams, duration, call).await)
                })
                .await?;
                server.stop()?;
                errors += r.error_count();
                let (rps, p99) = (r.per_second(), r.quantile_ms(0.99));
                say(format!(
                    "reads at {streams} streams, {} run {run}: {rps:.0}/s p99 {p99:.3} ms",
                    if with_auth { "JWT" } else { "no auth" }
                ));
                if with_auth {
                    secured.push(rps);
                    secured_p99.push(p99);
                } else {
                    open.push(rps);
                    open_p99.push(p99);
                }
            }
        }
        let row = Row::new(
            format!("GetPartnershipReport at {streams} streams with JWT (a reader token per stream)"),
            "req/s",
            Figure::of(secured),
        )
        .anchor("the same load without authentication, same run", Figure::of(open))
        .note("p99 ms", format!("{:.3}", Figure::of(secured_p99).median))
        .note("p99 ms without auth", format!("{:.3}", Figure::of(open_p99).median))
        .note("non-OK", errors);
        rows.push(row.ratio_at_least(0.8));

        // Ingest: each agency streams its own records, 16 partnerships at a time.
        let auth_records = n_ingest.min(200_000);
        let auth_synth = synth::Synth::new(synth::SynthConfig::scaled(auth_records));
        let auth_partnerships = auth_synth.config.partnerships;
        let (mut open, mut secured) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for with_auth in [false, true] {
                let dir = work.join(format!("auth-ingest-{run}-{with_auth}"));
                fresh_dir(&dir)?;
                let env: Vec<(&str, &str)> = if with_auth {
                    secured_env.iter().map(|(k, v)| (*k, v.as_str())).collect()
                } else {
                    Vec::new()
                };
                let server = Server::start_with(&bin, &sqlite_url(&dir), next_port(), &env).await?;
                let k = with_auth.then_some(&keys);
                let channel = ClientArgs::plain(&server.target).channel().await?;
                auth::load_registry(channel.clone(), &auth_synth, k).await?;
                let (t, n) =
                    auth::ingest_by_agency(channel, &auth_synth, auth_partnerships, 1_000, 16, k).await?;
                server.stop()?;
                std::fs::remove_dir_all(&dir)?;
                let rate = n as f64 / t.as_secs_f64();
                say(format!(
                    "ingest by agency, {} run {run}: {n} records, {rate:.0} records/s",
                    if with_auth { "JWT" } else { "no auth" }
                ));
                if with_auth { secured.push(rate) } else { open.push(rate) }
            }
        }
        let row = Row::new(
            "IngestRecords into SQLite with JWT (one stream and submitter token per agency)",
            "records/s",
            Figure::of(secured),
        )
        .anchor("the same streams without authentication, same run", Figure::of(open))
        .note("records", auth_records)
        .note("agencies", auth_partnerships * (auth_synth.config.members + 3));
        rows.push(row.ratio_at_least(0.9));
    }

    // --- Overload: report reads offered far beyond capacity ------------------------------
    if phase(Phase::Overload) {
        let cache = format!("{}", (config.partnerships * 16 / 1024).max(64));
        let server = Server::start_with(
            &bin,
            &sqlite_url(&data),
            next_port(),
            &[("PM_REPORT_CACHE_MIB", cache.as_str())],
        )
        .await?;
        let ids: Arc<Vec<String>> =
            Arc::new((0..config.partnerships).map(|p| synth.partnership_id(p)).collect());
        warm(&server.target, &ids).await?;
        let duration = Duration::from_secs_f64(args.duration_secs);
        rows.extend(
            edge::overload(
                server.target.clone(),
                ids,
                vec![320, 2_000],
                runs,
                duration,
                server.pid(),
                || server.peak_rss_mib(),
            )
            .await?,
        );
        server.stop()?;
    }

    // --- Concurrent IngestRecords streams on PostgreSQL, one and two replicas -----------
    if args.postgres_url != "none" && phase(Phase::Concurrent) {
        let sub = synth::Synth::new(synth::SynthConfig::scaled(n_ingest.min(300_000)));
        let partnerships = sub.config.partnerships;
        let configs = [(1usize, 1usize), (1, 8), (1, 64), (2, 8), (2, 64)];
        let mut figures: Vec<(Vec<f64>, u64)> = configs.iter().map(|_| Default::default()).collect();
        // Cores busy during each stream set: at the machine's cores, another replica has
        // no CPU to add.
        let mut busy: Vec<Vec<f64>> = configs.iter().map(|_| Vec::new()).collect();
        for run in 0..runs {
            for (i, &(replicas, streams)) in configs.iter().enumerate() {
                let db =
                    PgDatabase::create(&args.postgres_url, &format!("pm_bench_concurrent_{i}_{run}")).await?;
                let mut servers = Vec::new();
                for _ in 0..replicas {
                    servers.push(Server::start(&bin, &db.url(), next_port()).await?);
                }
                let targets: Vec<String> = servers.iter().map(|s| s.target.clone()).collect();
                loader::load_registry(loader::connect(&targets[0]).await?, &sub).await?;
                let busy0 = server::machine_busy_seconds();
                let (t, n, bad) =
                    edge::concurrent_ingest(&targets, &sub, partnerships, streams, 1_000).await?;
                busy[i].push((server::machine_busy_seconds() - busy0) / t.as_secs_f64());
                for s in servers {
                    s.stop()?;
                }
                db.drop_now().await?;
                let rate = n as f64 / t.as_secs_f64();
                say(format!(
                    "concurrent ingest, {replicas} replica(s), {streams} streams, run {run}: {rate:.0} records/s, {bad} non-OK"
                ));
                figures[i].0.push(rate);
                figures[i].1 += bad;
            }
        }
        let one = Figure::of(figures[0].0.clone());
        for (i, &(replicas, streams)) in configs.iter().enumerate().skip(1) {
            let row = Row::new(
                format!("IngestRecords into PostgreSQL, {streams} concurrent streams, {replicas} replica(s)"),
                "records/s",
                Figure::of(figures[i].0.clone()),
            )
            .anchor("one stream, one replica, same run", one.clone())
            .note("records per run", sub.estimated_record_count())
            .note("non-OK", figures[i].1)
            .note("cores busy", format!("{:.2}", Figure::of(busy[i].clone()).median));
            let met = row.ratio.is_some_and(|r| r >= 1.0) && figures[i].1 == 0;
            rows.push(row.target(">= the one-stream rate; 0 errors", Some(met)));
        }
        // Scale-out: two replicas beside one, both at 64 streams.
        let one_64 = Figure::of(figures[2].0.clone());
        let row = Row::new(
            "IngestRecords into PostgreSQL, 64 concurrent streams, 2 replicas vs 1",
            "records/s",
            Figure::of(figures[4].0.clone()),
        )
        .anchor("64 streams into one replica, same run", one_64)
        .note("non-OK", figures[4].1 + figures[2].1)
        .note(
            "cores busy, two replicas and one",
            format!(
                "{:.2}, {:.2} of {}",
                Figure::of(busy[4].clone()).median,
                Figure::of(busy[2].clone()).median,
                machine().cores
            ),
        );
        let met = row.ratio.is_some_and(|r| r >= 1.5) && figures[4].1 == 0;
        rows.push(row.target(">= 1.5x", Some(met)));
    }

    // --- One ListRecords page under each filter ------------------------------------------
    if phase(Phase::List) {
        let mut backends = vec![("SQLite", sqlite_url(&data), None)];
        if args.postgres_url != "none" {
            // PostgreSQL holds up to 1M records for this: the size the target names.
            let pg_synth = synth::Synth::new(synth::SynthConfig::scaled(records.min(1_000_000)));
            let db = PgDatabase::create(&args.postgres_url, "pm_bench_list").await?;
            let server = Server::start(&bin, &db.url(), next_port()).await?;
            let channel = loader::connect(&server.target).await?;
            let mut stats = loader::load_registry(channel.clone(), &pg_synth).await?;
            loader::load_records(channel, pg_synth.clone(), 10_000, &mut stats).await?;
            server.stop()?;
            say(format!("loaded {} records into PostgreSQL for the listing", stats.records));
            backends.push(("PostgreSQL", db.url(), Some((db, pg_synth))));
        }
        for (name, url, pg) in backends {
            let list_synth = pg.as_ref().map_or(&synth, |(_, s)| s);
            let server = Server::start(&bin, &url, next_port()).await?;
            for (filter, request) in edge::list_filters(list_synth) {
                let mut medians = Vec::new();
                let mut worst: f64 = 0.0;
                for _ in 0..runs {
                    let times = edge::page_times(&server.target, request.clone(), 20).await?;
                    let f = Figure::of(times);
                    worst = worst.max(f.max);
                    medians.push(f.median);
                }
                let value = Figure::of(medians);
                let ok = value.median <= 20.0;
                rows.push(
                    Row::new(format!("ListRecords page of 50 on {name}, filter: {filter}"), "ms", value)
                        .note("slowest page ms", format!("{worst:.1}"))
                        .target("<= 20 ms", Some(ok)),
                );
            }
            server.stop()?;
            if let Some((db, _)) = pg {
                db.drop_now().await?;
            }
        }
    }

    // --- Results -----------------------------------------------------------------------
    let date = today();
    let results = Results {
        scale,
        date: date.clone(),
        commit: git_commit(),
        machine: machine(),
        records: total_records as usize,
        partnerships: config.partnerships,
        ingest_records_per_run: anchor_rows.len(),
        runs,
        server_threads: args.server_threads,
        label: if ALL_PHASES.iter().all(|p| args.phases.contains(p)) {
            scale.name().to_string()
        } else {
            let names: Vec<String> = args
                .phases
                .iter()
                .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_string()))
                .collect();
            format!("{}-{}", scale.name(), names.join("-"))
        },
        phases: args.phases.clone(),
        server_env: args.server_env.clone(),
        server_cpus: args.server_cpus.clone(),
        client_cpus: args.client_cpus.clone(),
        rows,
    };
    std::fs::create_dir_all(&args.results_dir)?;
    let path = args.results_dir.join(format!("{date}-{}.json", results.label));
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    say(format!("wrote {}", path.display()));
    if args.markdown != "none" {
        update_markdown(Path::new(&args.markdown), &results)?;
        say(format!("updated {}", args.markdown));
    }
    println!("{}", stats::markdown(&results.rows));
    if !args.reuse_dataset {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// `GetPartnershipReport` at each of `streams_list` concurrent streams beside
/// `grpc.health.v1.Health/Check` through the same server and connections, `runs` runs
/// of `duration` each; one row per concurrency. The generator runs on a
/// single-threaded runtime of its own over bare HTTP/2 connections, as h2load would:
/// it then costs at most one core, and far less a call than the server does.
async fn report_reads(
    target: String,
    server_pid: u32,
    ids: Arc<Vec<String>>,
    streams_list: Vec<usize>,
    runs: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Row>> {
    let frames = Arc::new(edge::report_frames(&ids));
    load::on_own_thread(move || async move {
        let mut read_rows = Vec::new();
        for &streams in &streams_list {
            let chans = load::h2_channels(&target, load::connections_for(streams)).await?;
            let (mut rps, mut p50, mut p99, mut errors, mut shed) = (Vec::new(), Vec::new(), Vec::new(), 0, 0);
            let (mut hrps, mut hp99) = (Vec::new(), Vec::new());
            // CPU a call, report then Health: which process bounds each.
            let (mut report_cpu, mut health_cpu) = (CallCpu::default(), CallCpu::default());
            let health = load::grpc_frame(&HealthCheckRequest { service: String::new() });
            for run in 0..runs {
                let frames = frames.clone();
                let before = CallCpu::now(server_pid);
                // Past the server's --max-in-flight calls are shed; callers honour
                // RetryInfo, and a shed call is counted apart.
                let r = load::closed_loop(&chans, streams, duration, move |ch, seq| {
                    edge::report_call(ch, frames.clone(), seq)
                })
                .await;
                report_cpu.add(&before, &CallCpu::now(server_pid), r.ok);
                shed += edge::shed(&r);
                errors += edge::other_errors(&r);
                rps.push(r.per_second());
                p50.push(r.quantile_ms(0.5));
                p99.push(r.quantile_ms(0.99));
                let health = health.clone();
                let before = CallCpu::now(server_pid);
                let h = load::closed_loop(&chans, streams, duration, move |ch, _| {
                    let health = health.clone();
                    async move {
                        load::h2_unary(ch, "/grpc.health.v1.Health/Check", health).await.map(|_| ())
                    }
                })
                .await;
                health_cpu.add(&before, &CallCpu::now(server_pid), h.ok);
                errors += h.error_count();
                hrps.push(h.per_second());
                hp99.push(h.quantile_ms(0.99));
                say(format!(
                    "reads at {streams} streams run {run}: report {:.0}/s p50 {:.3} ms p99 {:.3} ms; health {:.0}/s",
                    rps[run], p50[run], p99[run], hrps[run]
                ));
            }
            let p99f = Figure::of(p99);
            let mut row = Row::new(format!("GetPartnershipReport at {streams} streams"), "req/s", Figure::of(rps))
                .anchor("grpc.health.v1.Health/Check, same server and generator", Figure::of(hrps))
                .note("p50 ms", format!("{:.3}", Figure::of(p50).median))
                .note("p99 ms", format!("{:.3}", p99f.median))
                .note("health p99 ms", format!("{:.3}", Figure::of(hp99).median))
                .note("non-OK", errors)
                .note("shed", shed)
                .note("us a report call (server, PostgreSQL, generator CPU)", report_cpu.per_call())
                .note("us a Health call", health_cpu.per_call());
            let met =
                (streams == 64).then(|| row.ratio.is_some_and(|r| r >= 0.5) && p99f.median <= 2.0 && errors == 0);
            row = row.target(if streams == 64 { ">= 0.5; p99 <= 2 ms" } else { "(shape)" }, met);
            read_rows.push(row);
        }
        Ok(read_rows)
    })
    .await
}

/// CPU seconds of the server, of PostgreSQL and of this process (the generator and
/// nothing else while a load runs), summed over runs with the calls they answered.
#[derive(Debug, Default)]
struct CallCpu {
    server: f64,
    postgres: f64,
    generator: f64,
    calls: u64,
}

impl CallCpu {
    fn now(server_pid: u32) -> CallCpu {
        let (server, postgres) = server::cpu_now(server_pid);
        let generator = server::cpu_seconds(std::process::id()).unwrap_or(0.0);
        CallCpu { server, postgres, generator, calls: 0 }
    }

    fn add(&mut self, before: &CallCpu, after: &CallCpu, calls: u64) {
        self.server += after.server - before.server;
        self.postgres += after.postgres - before.postgres;
        self.generator += after.generator - before.generator;
        self.calls += calls;
    }

    fn per_call(&self) -> String {
        let us = |s: f64| s * 1e6 / self.calls.max(1) as f64;
        format!("{:.1}, {:.1}, {:.1}", us(self.server), us(self.postgres), us(self.generator))
    }
}

/// Fetches every partnership's report once, so the cache holds the working set.
async fn warm(target: &str, ids: &[String]) -> anyhow::Result<()> {
    use futures::StreamExt;
    let client = ReportServiceClient::new(loader::connect(target).await?).max_decoding_message_size(64 << 20);
    let t0 = Instant::now();
    let warmed: Vec<_> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let mut c = client.clone();
            async move {
                c.get_partnership_report(pb::GetPartnershipReportRequest {
                    partnership: id,
                    period: "2026Q3".into(),
                    ..Default::default()
                })
                .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    anyhow::ensure!(warmed.iter().all(Result::is_ok), "a warm-up report failed");
    say(format!("warmed {} reports in {:.2} s", warmed.len(), t0.elapsed().as_secs_f64()));
    Ok(())
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Today as YYYY-MM-DD (UTC).
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    i32::try_from(days)
        .ok()
        .and_then(partnership_metrics::domain::Date::from_days)
        .map_or_else(|| "unknown-date".to_string(), |d| d.to_string())
}

/// Rewrites the scale's section of the Markdown file between its markers.
fn update_markdown(path: &Path, r: &Results) -> anyhow::Result<()> {
    let begin = format!("<!-- results:{} -->", r.label);
    let end = format!("<!-- /results:{} -->", r.label);
    let body = format!(
        "{begin}\n### {} ({} records, {} partnerships; {} runs per figure)\n\nMeasured {} at commit `{}` on {} cores, {} GiB, {} (kernel {}). \
         Ingest runs write {} records each into a fresh database. \
         Server worker threads: {}.{}\n\n{}{end}",
        r.label,
        r.records,
        r.partnerships,
        r.runs,
        r.date,
        r.commit,
        r.machine.cores,
        r.machine.memory_gib,
        r.machine.cpu,
        r.machine.kernel,
        r.ingest_records_per_run,
        if r.server_threads == 0 { "one per core".to_string() } else { r.server_threads.to_string() },
        match (&r.server_cpus, &r.client_cpus) {
            (None, None) => String::new(),
            (s, c) => format!(
                " Pinned: server on CPUs {}, pm-bench on CPUs {}.",
                s.as_deref().unwrap_or("any"),
                c.as_deref().unwrap_or("any")
            ),
        },
        stats::markdown(&r.rows),
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], body, &text[b + end.len()..]),
        _ => format!("{text}\n{body}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
