//! `partnership-metrics import`: loads CSV or NDJSON files through the public API, the
//! registry through the batch creates and the records through one IngestRecords
//! stream, with progress, a dry run and errors mapped back to their lines.
//!
//! Reruns are safe: each batch's request id is a hash of the file's name, the batch's
//! position and its content, so a batch already committed is answered from the
//! server's request log (a replay) instead of being stored again.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{
    client::{ApiChannel, describe},
    formats::{self, Content, Entry, Format, InputFile, Item},
};
use crate::{
    configuration::ImportArgs,
    pb::{
        self, ingest_records_response::Result as Ack, registry_service_client::RegistryServiceClient,
        submission_service_client::SubmissionServiceClient,
    },
};

/// Entries per batch create: the contract's limit.
const REGISTRY_BATCH: usize = 1000;
/// How often a plain progress line is written when standard error is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What an import did, for the summary (`--json` prints it as is).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub files: usize,
    pub agencies_created: u64,
    pub partnerships_created: u64,
    pub memberships_created: u64,
    /// Registry entries already registered exactly as the files give them.
    pub registry_unchanged: u64,
    pub records: u64,
    pub inserted: u64,
    pub replaced: u64,
    /// Records not stored: in rejected batches, or refused before sending.
    pub rejected: u64,
    pub batches: u64,
    /// Batches answered from the request log: committed by an earlier run, not
    /// stored again (their records are in neither `inserted` nor `replaced`).
    pub replayed_batches: u64,
    pub replayed_records: u64,
    /// Dry run only: records naming registry entries this import would create first,
    /// and endorsements of versions it adopts; the server cannot check them before
    /// those exist, so only their format was checked.
    pub checked_after_registry: u64,
    pub problems: u64,
    pub seconds: f64,
}

/// Prints problems as `file:line: field: reason`, above the progress bar.
#[derive(Clone)]
struct Problems {
    bar: ProgressBar,
    count: Arc<Mutex<u64>>,
}

impl Problems {
    fn report(&self, file: &str, line: u64, field: &str, reason: &str) {
        let text = match (line, field.is_empty()) {
            (0, true) => format!("{file}: {reason}"),
            (0, false) => format!("{file}: {field}: {reason}"),
            (_, true) => format!("{file}:{line}: {reason}"),
            (_, false) => format!("{file}:{line}: {field}: {reason}"),
        };
        self.bar.suspend(|| eprintln!("{text}"));
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
        }
    }

    fn count(&self) -> u64 {
        self.count.lock().map(|n| *n).unwrap_or(0)
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&args.batch_size) {
        bail!("--batch-size {}: must be 1 to 10000 (the contract's batch limit)", args.batch_size);
    }
    let files = input_files(&args.paths, args.format.map(Into::into))?;
    let channel = args.client.connect().await?;
    let summary = import(channel, &files, args.batch_size, args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", describe_summary(&summary));
    }
    if summary.problems > 0 {
        bail!(
            "{} problem(s), listed above; {}",
            summary.problems,
            if summary.dry_run {
                "nothing was stored (dry run)"
            } else {
                "the lines named were not stored; fix them and import again (batches already stored are replays)"
            }
        );
    }
    Ok(())
}

/// The files named, directories expanded to the files in them with known names, in
/// the order they must be loaded: agencies, partnerships, memberships, then records.
pub fn input_files(paths: &[PathBuf], format: Option<Format>) -> anyhow::Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
                let p = entry?.path();
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
                let wanted = match format {
                    Some(Format::Csv) => ext == "csv",
                    Some(Format::Ndjson) => matches!(ext, "ndjson" | "jsonl"),
                    None => matches!(ext, "csv" | "ndjson" | "jsonl"),
                };
                if wanted && p.is_file() {
                    found.push(InputFile::classify(&p, format)?);
                }
            }
            if found.is_empty() {
                bail!("{}: no .csv or .ndjson files", path.display());
            }
            files.extend(found);
        } else {
            files.push(InputFile::classify(path, format)?);
        }
    }
    files.sort_by(|a, b| (a.content, &a.path).cmp(&(b.content, &b.path)));
    Ok(files)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Runs an import; problems are printed as they are found and counted in the summary.
pub async fn import(
    channel: ApiChannel,
    files: &[InputFile],
    batch_size: usize,
    dry_run: bool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let record_lines: u64 = files
        .iter()
        .filter(|f| matches!(f.content, Content::Records(_)))
        .map(|f| count_lines(&f.path).map(|n| if f.format == Format::Csv { n.saturating_sub(1) } else { n }))
        .sum::<anyhow::Result<u64>>()?;
    let bar = progress_bar(record_lines);
    let problems = Problems { bar: bar.clone(), count: Arc::default() };
    let mut summary = Summary { dry_run, files: files.len(), ..Summary::default() };

    let registry = RegistryServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut new_ids = NewIds::default();
    for file in files.iter().filter(|f| !matches!(f.content, Content::Records(_))) {
        import_registry(registry.clone(), file, dry_run, &problems, &mut summary, &mut new_ids).await?;
    }

    let record_files: Vec<InputFile> =
        files.iter().filter(|f| matches!(f.content, Content::Records(_))).cloned().collect();
    if !record_files.is_empty() {
        let ticker = plain_progress(&bar);
        let result =
            import_records(channel, record_files, batch_size, dry_run, &problems, &mut summary, &new_ids)
                .await;
        if let Some(t) = ticker {
            t.abort();
        }
        result?;
    }
    bar.finish_and_clear();
    summary.problems = problems.count();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

pub fn describe_summary(s: &Summary) -> String {
    let mut out = String::new();
    let verb = if s.dry_run { "would be " } else { "" };
    if s.agencies_created + s.partnerships_created + s.memberships_created + s.registry_unchanged > 0 {
        out.push_str(&format!(
            "registry: {} agencies, {} partnerships, {} memberships {verb}created; {} already registered as given\n",
            s.agencies_created, s.partnerships_created, s.memberships_created, s.registry_unchanged
        ));
    }
    out.push_str(&format!(
        "records: {} in {} batches: {} {verb}inserted, {} {verb}replaced, {} rejected; {} batches ({} records) were replays of an earlier import\n",
        s.records, s.batches, s.inserted, s.replaced, s.rejected, s.replayed_batches, s.replayed_records
    ));
    if s.checked_after_registry > 0 {
        out.push_str(&format!(
            "dry run: {} records name agencies, partnerships or adoptions this import would create; the server cannot check them before those exist, so only their format was checked\n",
            s.checked_after_registry
        ));
    }
    out.push_str(&format!(
        "{}{:.1} s ({:.0} records/s){}\n",
        if s.dry_run { "dry run, nothing stored: " } else { "" },
        s.seconds,
        s.records as f64 / s.seconds.max(1e-9),
        if s.problems > 0 { format!("; {} problem(s)", s.problems) } else { String::new() }
    ));
    out
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut n, mut last) = (0u64, b'\n');
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[got - 1];
    }
    Ok(n + u64::from(last != b'\n'))
}

/// A bar (records, records/s, ETA) on a terminal; hidden otherwise, where
/// [`plain_progress`] writes a line every few seconds instead.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        return bar;
    }
    let bar = ProgressBar::new(total);
    // Counted in input rows (a team's entries are rows of one record).
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} rows  {rate}  ETA {eta}  {msg}")
    {
        bar.set_style(style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", state.per_sec());
            },
        ));
    }
    bar
}

fn plain_progress(bar: &ProgressBar) -> Option<tokio::task::JoinHandle<()>> {
    if !bar.is_hidden() {
        return None;
    }
    let bar = bar.clone();
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(PLAIN_PROGRESS_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            eprintln!(
                "import: {} of {} rows, {:.0} rows/s, ETA {} s",
                bar.position(),
                bar.length().unwrap_or(0),
                bar.per_sec(),
                bar.eta().as_secs()
            );
        }
    }))
}

/// Registry ids a dry run would create: records naming them cannot be checked against
/// the server's registry yet.
#[derive(Debug, Default)]
struct NewIds {
    agencies: HashSet<String>,
    partnerships: HashSet<String>,
}

/// The request id of one batch: the file's name, the batch's position and a hash of
/// its content, so a rerun of the same files is a replay and a changed batch is not.
fn request_id(file: &Path, position: usize, parts: impl Iterator<Item = Vec<u8>>) -> String {
    let mut h = Sha256::new();
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    h.update(name.as_bytes());
    h.update([0]);
    h.update((position as u64).to_be_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(&p);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("import-{hex}")
}

/// One problem per violation of a refused batch, mapped to the entry's line: paths
/// start `requests[i].` (registry) or `records[i].` (records).
fn violations(status: &Status, list: &str) -> Vec<(Option<usize>, String, String)> {
    let details = status.get_error_details();
    let mut out = Vec::new();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            out.push(split_path(&v.field, list, &v.description));
        }
    }
    if out.is_empty()
        && let Some(field) = details.error_info().and_then(|i| i.metadata.get("field"))
    {
        out.push(split_path(field, list, status.message()));
    }
    if let Some(omitted) = details
        .error_info()
        .and_then(|i| i.metadata.get("omitted_violations"))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n > 0)
    {
        out.push((None, String::new(), format!("and {omitted} more violation(s) of this batch, not listed")));
    }
    if out.is_empty() {
        out.push((None, String::new(), describe(status)));
    }
    out
}

fn split_path(field: &str, list: &str, reason: &str) -> (Option<usize>, String, String) {
    let prefix = format!("{list}[");
    if let Some(rest) = field.strip_prefix(&prefix)
        && let Some((i, path)) = rest.split_once(']')
        && let Ok(i) = i.parse::<usize>()
    {
        return (Some(i), path.trim_start_matches('.').to_string(), reason.to_string());
    }
    (None, field.to_string(), reason.to_string())
}

/// Refusals a caller cannot fix in its files: stop the import.
fn fatal(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition
    )
}

async fn import_registry(
    mut client: RegistryServiceClient<ApiChannel>,
    file: &InputFile,
    dry_run: bool,
    problems: &Problems,
    summary: &mut Summary,
    new_ids: &mut NewIds,
) -> anyhow::Result<()> {
    let name = display(&file.path);
    let mut items = Vec::new();
    for item in formats::read(file)? {
        match item {
            // The batch's request id covers its entries; an entry's own is not sent.
            Ok(mut i) => {
                match &mut i.entry {
                    Entry::Agency(m) => m.request_id.clear(),
                    Entry::Partnership(m) => m.request_id.clear(),
                    Entry::Membership(m) => m.request_id.clear(),
                    Entry::Record(_) => {}
                }
                items.push(i)
            }
            Err(e) => problems.report(&name, e.line, &e.field, &e.reason),
        }
    }
    // What is registered already: identical entries are skipped, different ones are
    // problems (the registry has no updates beyond memberships).
    let mut fresh: Vec<Item> = Vec::new();
    match file.content {
        Content::Agencies => {
            let existing = list_agencies(&mut client).await?;
            for item in items {
                let Entry::Agency(req) = &item.entry else { continue };
                match existing.get(&req.agency_id) {
                    None => {
                        new_ids.agencies.insert(req.agency_id.clone());
                        fresh.push(item);
                    }
                    Some(stored) => {
                        let given = req.agency.clone().unwrap_or_default();
                        if (stored.display_name.as_str(), stored.sector)
                            == (given.display_name.as_str(), given.sector)
                        {
                            summary.registry_unchanged += 1;
                        } else {
                            problems.report(
                                &name,
                                item.line,
                                "agency",
                                &format!("agency {} is registered with other details", req.agency_id),
                            );
                        }
                    }
                }
            }
        }
        Content::Partnerships => {
            let existing = list_partnerships(&mut client).await?;
            for item in items {
                let Entry::Partnership(req) = &item.entry else { continue };
                match existing.get(&req.partnership_id) {
                    None => {
                        new_ids.partnerships.insert(req.partnership_id.clone());
                        fresh.push(item);
                    }
                    Some(stored) => {
                        let given = req.partnership.clone().unwrap_or_default();
                        if (stored.display_name.as_str(), stored.purpose.as_str())
                            == (given.display_name.as_str(), given.purpose.as_str())
                        {
                            summary.registry_unchanged += 1;
                        } else {
                            problems.report(
                                &name,
                                item.line,
                                "partnership",
                                &format!(
                                    "partnership {} is registered with other details",
                                    req.partnership_id
                                ),
                            );
                        }
                    }
                }
            }
        }
        Content::Memberships => {
            let mut existing: HashMap<String, HashMap<String, pb::Membership>> = HashMap::new();
            for item in items {
                let Entry::Membership(req) = &item.entry else { continue };
                let partnership = req.parent.strip_prefix("partnerships/").unwrap_or(&req.parent).to_string();
                let given = req.membership.clone().unwrap_or_default();
                if dry_run
                    && (new_ids.partnerships.contains(&partnership)
                        || new_ids.agencies.contains(&given.agency))
                {
                    // Its partnership or agency is created by this import: nothing to
                    // check it against yet.
                    summary.memberships_created += 1;
                    continue;
                }
                if !existing.contains_key(&partnership) {
                    let listed = list_memberships(&mut client, &req.parent).await?;
                    existing.insert(partnership.clone(), listed);
                }
                match existing.get(&partnership).and_then(|m| m.get(&given.agency)) {
                    None => fresh.push(item),
                    Some(stored) => {
                        if (stored.role, stored.start_date.as_str(), stored.end_date.as_str())
                            == (given.role, given.start_date.as_str(), given.end_date.as_str())
                        {
                            summary.registry_unchanged += 1;
                        } else {
                            problems.report(
                                &name,
                                item.line,
                                "membership",
                                &format!(
                                    "{} is already a member of {partnership} with other details (change it with UpdateMembership)",
                                    given.agency
                                ),
                            );
                        }
                    }
                }
            }
        }
        Content::Records(_) => return Ok(()),
    }

    for (position, chunk) in fresh.chunks(REGISTRY_BATCH).enumerate() {
        let encoded = chunk.iter().map(|i| match &i.entry {
            Entry::Agency(m) => m.encode_to_vec(),
            Entry::Partnership(m) => m.encode_to_vec(),
            Entry::Membership(m) => m.encode_to_vec(),
            Entry::Record(m) => m.encode_to_vec(),
        });
        let request_id = request_id(&file.path, position, encoded);
        let answer = match file.content {
            Content::Agencies => client
                .batch_create_agencies(pb::BatchCreateAgenciesRequest {
                    requests: chunk
                        .iter()
                        .filter_map(|i| match &i.entry {
                            Entry::Agency(m) => Some(m.clone()),
                            _ => None,
                        })
                        .collect(),
                    request_id,
                    validate_only: dry_run,
                })
                .await
                .map(|r| r.into_inner().agencies.len()),
            Content::Partnerships => client
                .batch_create_partnerships(pb::BatchCreatePartnershipsRequest {
                    requests: chunk
                        .iter()
                        .filter_map(|i| match &i.entry {
                            Entry::Partnership(m) => Some(m.clone()),
                            _ => None,
                        })
                        .collect(),
                    request_id,
                    validate_only: dry_run,
                })
                .await
                .map(|r| r.into_inner().partnerships.len()),
            _ => client
                .batch_create_memberships(pb::BatchCreateMembershipsRequest {
                    parent: "partnerships/-".into(),
                    requests: chunk
                        .iter()
                        .filter_map(|i| match &i.entry {
                            Entry::Membership(m) => Some(m.clone()),
                            _ => None,
                        })
                        .collect(),
                    request_id,
                    validate_only: dry_run,
                })
                .await
                .map(|r| r.into_inner().memberships.len()),
        };
        match answer {
            Ok(n) => {
                let n = n as u64;
                match file.content {
                    Content::Agencies => summary.agencies_created += n,
                    Content::Partnerships => summary.partnerships_created += n,
                    _ => summary.memberships_created += n,
                }
            }
            Err(status) if fatal(&status) => {
                bail!("{name}: the server refused the registry batch: {}", describe(&status))
            }
            Err(status) => {
                for (i, field, reason) in violations(&status, "requests") {
                    let line = i.and_then(|i| chunk.get(i)).map(|item| item.line).unwrap_or(0);
                    problems.report(&name, line, &field, &reason);
                }
            }
        }
    }
    Ok(())
}

async fn list_agencies(
    client: &mut RegistryServiceClient<ApiChannel>,
) -> anyhow::Result<HashMap<String, pb::Agency>> {
    let mut out = HashMap::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_agencies(pb::ListAgenciesRequest { page_size: 1000, page_token: token })
            .await
            .map_err(|s| anyhow::anyhow!("listing agencies: {}", describe(&s)))?
            .into_inner();
        for a in page.agencies {
            out.insert(a.name.trim_start_matches("agencies/").to_string(), a);
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

async fn list_partnerships(
    client: &mut RegistryServiceClient<ApiChannel>,
) -> anyhow::Result<HashMap<String, pb::Partnership>> {
    let mut out = HashMap::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_partnerships(pb::ListPartnershipsRequest { page_size: 1000, page_token: token })
            .await
            .map_err(|s| anyhow::anyhow!("listing partnerships: {}", describe(&s)))?
            .into_inner();
        for p in page.partnerships {
            out.insert(p.name.trim_start_matches("partnerships/").to_string(), p);
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// The memberships of a partnership by agency; none when the partnership is unknown
/// (the batch create then says so, line by line).
async fn list_memberships(
    client: &mut RegistryServiceClient<ApiChannel>,
    parent: &str,
) -> anyhow::Result<HashMap<String, pb::Membership>> {
    let mut out = HashMap::new();
    let mut token = String::new();
    loop {
        let page = match client
            .list_memberships(pb::ListMembershipsRequest {
                parent: parent.to_string(),
                page_size: 1000,
                page_token: token,
            })
            .await
        {
            Ok(p) => p.into_inner(),
            Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => return Ok(out),
            Err(s) => bail!("listing the memberships of {parent}: {}", describe(&s)),
        };
        for m in page.memberships {
            out.insert(m.agency.clone(), m);
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// A batch on its way: where its records came from.
struct Sent {
    file: String,
    items: Vec<Item>,
    rows: u64,
}

async fn import_records(
    channel: ApiChannel,
    files: Vec<InputFile>,
    batch_size: usize,
    dry_run: bool,
    problems: &Problems,
    summary: &mut Summary,
    new_ids: &NewIds,
) -> anyhow::Result<()> {
    let mut client = SubmissionServiceClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let in_flight: Arc<Mutex<VecDeque<Sent>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<pb::IngestRecordsRequest>(2);
    let producer = {
        let in_flight = in_flight.clone();
        let problems = problems.clone();
        // Files are parsed on a blocking thread while earlier batches are on the wire.
        // A dry run creates no registry entries, so records naming one it would
        // create cannot be checked by the server; they are checked locally only.
        let new: HashSet<String> = if dry_run {
            new_ids.agencies.iter().chain(&new_ids.partnerships).cloned().collect()
        } else {
            HashSet::new()
        };
        tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
            let (mut refused, mut deferred) = (0u64, 0u64);
            // Likewise an endorsement of a version this import adopts: the adoption
            // is not stored by a dry run, so the server would find no adoption.
            let mut adopted: HashSet<(String, i64)> = HashSet::new();
            for file in &files {
                let name = display(&file.path);
                let mut position = 0usize;
                let mut batch: Vec<Item> = Vec::with_capacity(batch_size);
                let send = |batch: Vec<Item>, position: usize| -> bool {
                    let records: Vec<pb::Record> = batch
                        .iter()
                        .filter_map(|i| match &i.entry {
                            Entry::Record(r) => Some(r.clone()),
                            _ => None,
                        })
                        .collect();
                    let request_id =
                        request_id(&file.path, position, records.iter().map(|r| r.encode_to_vec()));
                    let rows = batch.iter().map(|i| i.parts.len().max(1) as u64).sum();
                    if let Ok(mut q) = in_flight.lock() {
                        q.push_back(Sent { file: name.clone(), items: batch, rows });
                    }
                    tx.blocking_send(pb::IngestRecordsRequest { request_id, records, validate_only: dry_run })
                        .is_ok()
                };
                for item in formats::read(file)? {
                    match item {
                        Ok(Item { entry: Entry::Record(r), parts, .. })
                            if dry_run && (formats::record_names_any(&r, &new) || endorses(&r, &adopted)) =>
                        {
                            problems.bar.inc(parts.len().max(1) as u64);
                            deferred += 1;
                        }
                        Ok(i) if dry_run => {
                            if let Entry::Record(pb::Record {
                                kind: Some(pb::record::Kind::PrinciplesAdoption(a)),
                            }) = &i.entry
                            {
                                adopted.insert((a.partnership.clone(), a.version));
                            }
                            batch.push(i)
                        }
                        Ok(i) => batch.push(i),
                        Err(e) => {
                            problems.report(&name, e.line, &e.field, &e.reason);
                            problems.bar.inc(1);
                            refused += 1;
                        }
                    }
                    if batch.len() == batch_size {
                        if !send(std::mem::replace(&mut batch, Vec::with_capacity(batch_size)), position) {
                            return Ok((refused, deferred));
                        }
                        position += 1;
                    }
                }
                if !batch.is_empty() && !send(batch, position) {
                    return Ok((refused, deferred));
                }
            }
            Ok((refused, deferred))
        })
    };
    let mut acks = client
        .ingest_records(ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!("opening IngestRecords: {}", describe(&s)))?
        .into_inner();
    loop {
        let ack = match acks.message().await {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(s) => bail!("the IngestRecords stream ended: {}", describe(&s)),
        };
        let Some(sent) = in_flight.lock().ok().and_then(|mut q| q.pop_front()) else {
            bail!("batch {} was answered but never sent", ack.batch_index);
        };
        summary.batches += 1;
        let n = sent.items.len() as u64;
        summary.records += n;
        problems.bar.inc(sent.rows);
        match ack.result {
            Some(Ack::Accepted(ok)) => {
                // A replay was stored by an earlier run: its counts are that run's.
                if ok.replayed {
                    summary.replayed_batches += 1;
                    summary.replayed_records += n;
                } else {
                    summary.inserted += ok.inserted_count as u64;
                    summary.replaced += ok.replaced_count as u64;
                }
            }
            Some(Ack::Rejected(rejected)) => {
                let status = Status::with_details(
                    Code::from(rejected.code),
                    rejected.message.clone(),
                    rejected.encode_to_vec().into(),
                );
                if fatal(&status) {
                    bail!("{}: the server refused a batch: {}", sent.file, describe(&status));
                }
                let listed = violations(&status, "records");
                summary.rejected += n;
                for (i, field, reason) in listed {
                    let (line, field) = match i.and_then(|i| sent.items.get(i)) {
                        Some(item) => (formats::line_of(item, &field), field),
                        None => (0, field),
                    };
                    problems.report(&sent.file, line, &field, &reason);
                }
            }
            None => bail!("batch {} was answered with no result", ack.batch_index),
        }
    }
    let (refused, deferred) = producer.await.context("reading the files")??;
    summary.rejected += refused;
    summary.checked_after_registry += deferred;
    summary.records += deferred;
    Ok(())
}

fn endorses(record: &pb::Record, adopted: &HashSet<(String, i64)>) -> bool {
    match &record.kind {
        Some(pb::record::Kind::PrinciplesEndorsement(e)) => {
            adopted.contains(&(e.partnership.clone(), e.version))
        }
        _ => false,
    }
}
