//! Loads a synthetic data set into a running server through its public API, the way
//! an integrator's pipeline would: registry calls, then one IngestRecords stream.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, transport::Channel};

use super::synth::Synth;
use crate::pb::{
    self, ingest_records_response::Result as Ack, registry_service_client::RegistryServiceClient,
    submission_service_client::SubmissionServiceClient,
};

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

pub async fn connect(target: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(target.to_string())
        .with_context(|| format!("bad target URL {target}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {target}"))
}

/// An "already exists" answer means an earlier load got there first: fine.
fn created<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow::anyhow!("registry call failed: {} {}", s.code(), s.message())),
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
pub async fn load_registry(channel: Channel, synth: &Synth) -> anyhow::Result<LoadStats> {
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
    channel: Channel,
    synth: Synth,
    batch_size: usize,
    stats: &mut LoadStats,
) -> anyhow::Result<()> {
    load_records_limited(channel, synth, batch_size, usize::MAX, stats).await
}

/// As [`load_records`], the first `limit` records only.
pub async fn load_records_limited(
    channel: Channel,
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
    let c = synth.config;
    let prefix = format!("synth-{}x{}-{}-b{batch_size}", c.partnerships, c.members, c.seed);
    let producer = tokio::task::spawn_blocking(move || {
        let mut records = synth.records().take(limit);
        let mut index = 0u64;
        loop {
            let batch: Vec<pb::Record> = records.by_ref().take(batch_size).collect();
            if batch.is_empty() {
                return;
            }
            let request =
                pb::IngestRecordsRequest { request_id: format!("{prefix}-{index}"), records: batch };
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
