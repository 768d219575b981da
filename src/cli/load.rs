//! Loads a synthetic data set into a running server through its public API, the way
//! an integrator's pipeline would: registry calls, then one IngestRecords stream.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, service::interceptor::InterceptedService};

use super::{
    client::{ApiChannel, Credentials},
    synth::Synth,
};
use crate::pb::{
    self, ingest_records_response::Result as Ack, registry_service_client::RegistryServiceClient,
    submission_service_client::SubmissionServiceClient,
};
use crate::{auth::dev, configuration::ClientArgs, domain::access::Role};

/// Registry calls in flight at once while loading.
const REGISTRY_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadStats {
    pub agencies: usize,
    pub partnerships: usize,
    pub memberships: usize,
    pub records: u64,
    pub batches: u64,
    pub registry_time: Duration,
    pub records_time: Duration,
}

/// A plaintext connection without credentials (a local-development server).
pub async fn connect(target: &str) -> anyhow::Result<ApiChannel> {
    ClientArgs::plain(target).connect().await
}

/// An "already exists" answer means an earlier load got there first: fine.
fn created<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow::anyhow!("registry call failed: {}", super::client::describe(&s))),
    }
}

/// Runs `call` on every request, a few at a time; returns how many were made.
async fn create_all<R, F, Fut>(requests: impl Iterator<Item = R>, call: F) -> anyhow::Result<usize>
where
    F: Fn(R) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter(requests)
        .map(call)
        .buffer_unordered(REGISTRY_CONCURRENCY)
        .try_fold(0, |n, ()| async move { Ok(n + 1) })
        .await
}

/// Creates the data set's agencies, partnerships and memberships.
pub async fn load_registry(channel: ApiChannel, synth: &Synth) -> anyhow::Result<LoadStats> {
    let started = Instant::now();
    let client = RegistryServiceClient::new(channel);
    let agencies = create_all(synth.agency_requests(), |req| {
        let mut c = client.clone();
        async move { created(c.create_agency(req).await) }
    })
    .await?;
    let partnerships = create_all(synth.partnership_requests(), |req| {
        let mut c = client.clone();
        async move { created(c.create_partnership(req).await) }
    })
    .await?;
    let memberships = create_all(synth.membership_requests(), |req| {
        let mut c = client.clone();
        async move { created(c.create_membership(req).await) }
    })
    .await?;
    Ok(LoadStats {
        agencies,
        partnerships,
        memberships,
        registry_time: started.elapsed(),
        ..LoadStats::default()
    })
}

/// Streams every record in batches of `batch_size` over one IngestRecords call and
/// checks every acknowledgement. Records are generated as they are sent, so the
/// client's memory does not grow with the data set.
pub async fn load_records(
    channel: ApiChannel,
    synth: Synth,
    batch_size: usize,
    stats: &mut LoadStats,
) -> anyhow::Result<()> {
    load_records_limited(channel, synth, batch_size, usize::MAX, stats).await
}

/// As [`load_records`], the first `limit` records only.
pub async fn load_records_limited(
    channel: ApiChannel,
    synth: Synth,
    batch_size: usize,
    limit: usize,
    stats: &mut LoadStats,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut client = SubmissionServiceClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel::<pb::IngestRecordsRequest>(2);
    // Request ids name the data set and the batching, so a rerun of the same load is
    // a retry and a different load never reuses an id.
    let prefix = request_id_prefix(&synth, batch_size);
    let producer = tokio::task::spawn_blocking(move || {
        let mut records = synth.records().take(limit);
        let mut index = 0u64;
        loop {
            let batch: Vec<pb::Record> = records.by_ref().take(batch_size).collect();
            if batch.is_empty() {
                return;
            }
            let request = pb::IngestRecordsRequest {
                request_id: format!("{prefix}-{index}"),
                records: batch,
                validate_only: false,
            };
            if tx.blocking_send(request).is_err() {
                return;
            }
            index += 1;
        }
    });
    let mut acks =
        client.ingest_records(ReceiverStream::new(rx)).await.context("opening IngestRecords")?.into_inner();
    while let Some(ack) = acks.message().await.context("reading acknowledgements")? {
        match ack.result {
            Some(Ack::Accepted(ok)) => {
                stats.records += ok.record_count as u64;
                stats.batches += 1;
            }
            Some(Ack::Rejected(status)) => {
                bail!("batch {} was rejected: {} ({:?})", ack.batch_index, status.message, status.code)
            }
            None => bail!("batch {} was answered with no result", ack.batch_index),
        }
    }
    producer.await.context("record generator")?;
    stats.records_time = started.elapsed();
    Ok(())
}

/// Request ids name the data set and the batching, so a rerun of the same load is a
/// retry and a different load never reuses an id.
fn request_id_prefix(synth: &Synth, batch_size: usize) -> String {
    let c = synth.config;
    format!("synth-{}x{}-{}-b{batch_size}", c.partnerships, c.members, c.seed)
}

/// How long tokens minted for one load stay valid.
const LOAD_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Loads the data set into a server that authenticates, with tokens minted from a
/// `dev-credentials` directory: the registry as a registrar, and each agency's
/// records as a submitter of that agency (a submitter may only submit its own).
/// Records are grouped by reporting agency and sent as SubmitRecords batches of
/// `batch_size`, so memory holds at most one batch per agency.
pub async fn load_with_dev_credentials(
    target: &ClientArgs,
    dir: &std::path::Path,
    synth: &Synth,
    batch_size: usize,
) -> anyhow::Result<LoadStats> {
    let channel = target.channel().await?;
    let registrar = dev::mint_dev_token(dir, "dev-demo-registrar", None, &[Role::Registrar], LOAD_TOKEN_TTL)?;
    let mut stats =
        load_registry(InterceptedService::new(channel.clone(), Credentials::bearer(&registrar)?), synth)
            .await?;
    let started = Instant::now();
    let prefix = request_id_prefix(synth, batch_size);
    let mut pending: std::collections::BTreeMap<String, Vec<pb::Record>> = Default::default();
    let mut clients: std::collections::HashMap<String, SubmissionServiceClient<ApiChannel>> =
        Default::default();
    let mut sent: std::collections::HashMap<String, u64> = Default::default();
    let mut flush = async |agency: String, records: Vec<pb::Record>| -> anyhow::Result<()> {
        if !clients.contains_key(&agency) {
            let token = dev::mint_dev_token(
                dir,
                &format!("dev-{agency}-submitter"),
                Some(&agency),
                &[Role::Submitter],
                LOAD_TOKEN_TTL,
            )?;
            let client = SubmissionServiceClient::new(InterceptedService::new(
                channel.clone(),
                Credentials::bearer(&token)?,
            ))
            .max_encoding_message_size(64 << 20);
            clients.insert(agency.clone(), client);
        }
        let n = sent.entry(agency.clone()).or_default();
        let request = pb::SubmitRecordsRequest {
            request_id: format!("{prefix}-{agency}-{n}"),
            records,
            validate_only: false,
        };
        *n += 1;
        let client = clients.get_mut(&agency).context("a client per agency")?;
        let ok = client
            .submit_records(request)
            .await
            .map_err(|s| {
                anyhow::anyhow!("a batch of agency {agency} was refused: {}", super::client::describe(&s))
            })?
            .into_inner();
        stats.records += ok.record_count as u64;
        stats.batches += 1;
        Ok(())
    };
    // Endorsements refer to another agency's adoption, which grouping by agency could
    // send later: they go in a second pass, once every adoption is stored.
    for endorsements in [false, true] {
        let records = synth.records().filter(|r| is_endorsement(r) == endorsements);
        for record in records {
            let Some(agency) = reporting_agency(&record) else { continue };
            let batch = pending.entry(agency.clone()).or_default();
            batch.push(record);
            if batch.len() >= batch_size {
                let full = std::mem::take(batch);
                flush(agency, full).await?;
            }
        }
        for (agency, records) in std::mem::take(&mut pending) {
            if !records.is_empty() {
                flush(agency, records).await?;
            }
        }
    }
    stats.records_time = started.elapsed();
    Ok(stats)
}

fn is_endorsement(record: &pb::Record) -> bool {
    matches!(record.kind, Some(pb::record::Kind::PrinciplesEndorsement(_)))
}

/// The reporting agency of a wire record (methodology 2.3): whose records these are.
pub fn reporting_agency(record: &pb::Record) -> Option<String> {
    use pb::record::Kind;
    Some(
        match record.kind.as_ref()? {
            Kind::WorkforceReturn(r) => &r.agency,
            Kind::ServiceContract(r) => &r.commissioner,
            Kind::TeamComposition(r) => &r.reporting_agency,
            Kind::SurveyResponse(r) => &r.respondent_agency,
            Kind::RelationshipRating(r) => &r.rater,
            Kind::PrinciplesAdoption(r) => &r.reporting_agency,
            Kind::PrinciplesEndorsement(r) => &r.agency,
            Kind::RestructuringEvent(r) => &r.agency,
            Kind::BudgetContribution(r) => &r.agency,
        }
        .clone(),
    )
}
