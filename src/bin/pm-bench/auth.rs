//! What authentication costs: the same workloads against a server that verifies JWTs
//! and one that does not, in the same run. Callers behave as agencies would: each
//! stream acts for one agency with a token of its own (reader tokens for report
//! reads, submitter tokens for ingest), so the server verifies one token per client
//! and then finds it in its cache, and checks the partnership against the caller's
//! memberships on every read.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use partnership_metrics::{
    auth::dev::{AccessClaims, SigningKey, jwks},
    cli::{
        client::{ApiChannel, Credentials},
        load as loader,
        synth::Synth,
    },
    domain::access::Role,
    pb::{self, ingest_records_response::Result as Ack, submission_service_client::SubmissionServiceClient},
};
use tonic::{metadata::AsciiMetadataValue, service::interceptor::InterceptedService, transport::Channel};

pub const ISSUER: &str = "https://bench-idp.invalid";
pub const AUDIENCE: &str = "partnership-metrics-bench";

/// A signing key and its JWKS file, for the authenticating server.
pub struct BenchKeys {
    key: SigningKey,
    jwks: PathBuf,
}

impl BenchKeys {
    pub fn new(dir: &Path) -> anyhow::Result<BenchKeys> {
        std::fs::create_dir_all(dir)?;
        let key = SigningKey::generate(jsonwebtoken::Algorithm::EdDSA, "bench-1")?;
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks(&[&key])?).with_context(|| format!("writing {}", path.display()))?;
        Ok(BenchKeys { key, jwks: path })
    }

    /// The environment that makes the server verify these tokens.
    pub fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PM_JWT_JWKS", self.jwks.display().to_string()),
            ("PM_JWT_ISSUER", ISSUER.into()),
            ("PM_JWT_AUDIENCE", AUDIENCE.into()),
        ]
    }

    pub fn token(&self, agency: Option<&str>, role: Role) -> anyhow::Result<String> {
        let sub = format!("bench-{}-{role}", agency.unwrap_or("all"));
        self.key.sign(&AccessClaims::new(&sub, ISSUER, AUDIENCE, agency, &[role], Duration::from_secs(3600)))
    }

    /// `authorization: Bearer <token>` for one caller.
    pub fn header(&self, agency: Option<&str>, role: Role) -> anyhow::Result<AsciiMetadataValue> {
        Ok(format!("Bearer {}", self.token(agency, role)?).parse()?)
    }
}

/// Who stream `s` of a read load is, and what it reads: the lead agency of
/// partnership `s`, reading that partnership's report.
pub fn reader_plan(synth: &Synth, streams: usize) -> Vec<(String, String)> {
    let n = synth.config.partnerships;
    (0..streams).map(|s| (synth.member_id(s % n, 0), synth.partnership_id(s % n))).collect()
}

/// The registry, loaded by a registrar (with a token when `keys` is given).
pub async fn load_registry(channel: Channel, synth: &Synth, keys: Option<&BenchKeys>) -> anyhow::Result<()> {
    let credentials = match keys {
        Some(k) => Credentials::bearer(&k.token(None, Role::Registrar)?)?,
        None => Credentials::none(),
    };
    loader::load_registry(InterceptedService::new(channel, credentials), synth).await?;
    Ok(())
}

/// Streams the records of the first `partnerships` partnerships as their agencies
/// would: one IngestRecords stream per agency (with its submitter token when `keys`
/// is given), batches of up to `batch`, `concurrency` agencies at once. Returns the
/// time and the records acknowledged.
pub async fn ingest_by_agency(
    channel: Channel,
    synth: &Synth,
    partnerships: usize,
    batch: usize,
    concurrency: usize,
    keys: Option<&BenchKeys>,
) -> anyhow::Result<(Duration, u64)> {
    // Agencies belong to one partnership each, so a partnership's records hold every
    // record of its agencies.
    let mut work = Vec::new();
    for p in 0..partnerships {
        let mut by_agency: BTreeMap<String, Vec<pb::Record>> = BTreeMap::new();
        // Adoptions before endorsements, as in the set itself: the lead's stream goes first.
        for r in synth.records_of(p) {
            if let Some(a) = loader::reporting_agency(&r) {
                by_agency.entry(a).or_default().push(r);
            }
        }
        let lead = synth.member_id(p, 0);
        let mut streams: Vec<(String, Vec<pb::Record>)> = by_agency.into_iter().collect();
        streams.sort_by_key(|(a, _)| *a != lead);
        work.push(streams);
    }
    let started = Instant::now();
    // One partnership at a time per worker keeps the lead's adoptions ahead of the
    // endorsements that refer to them.
    let results: Vec<anyhow::Result<u64>> = futures::stream::iter(work)
        .map(|streams| {
            let channel = channel.clone();
            async move {
                let mut n = 0;
                let (lead, rest) = streams.split_first().context("a partnership without records")?;
                n += one_stream(channel.clone(), lead, batch, keys).await?;
                let others: Vec<anyhow::Result<u64>> = futures::future::join_all(
                    rest.iter().map(|s| one_stream(channel.clone(), s, batch, keys)),
                )
                .await;
                for r in others {
                    n += r?;
                }
                Ok(n)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok((started.elapsed(), total))
}

async fn one_stream(
    channel: Channel,
    (agency, records): &(String, Vec<pb::Record>),
    batch: usize,
    keys: Option<&BenchKeys>,
) -> anyhow::Result<u64> {
    let credentials = match keys {
        Some(k) => Credentials::bearer(&k.token(Some(agency), Role::Submitter)?)?,
        None => Credentials::none(),
    };
    let channel: ApiChannel = InterceptedService::new(channel, credentials);
    let mut client = SubmissionServiceClient::new(channel).max_encoding_message_size(64 << 20);
    let batches: Vec<pb::IngestRecordsRequest> = records
        .chunks(batch)
        .map(|c| pb::IngestRecordsRequest {
            request_id: String::new(),
            records: c.to_vec(),
            validate_only: false,
        })
        .collect();
    let mut acks = client.ingest_records(tokio_stream::iter(batches)).await?.into_inner();
    let mut n = 0;
    while let Some(ack) = acks.message().await? {
        match ack.result {
            Some(Ack::Accepted(ok)) => n += ok.record_count as u64,
            other => anyhow::bail!("a batch of {agency} was not accepted: {other:?}"),
        }
    }
    Ok(n)
}
