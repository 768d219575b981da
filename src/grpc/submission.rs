//! SubmissionService: batches of records, unary and streamed, and reading them back.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, future::BoxFuture};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::{Grpc, NamedService};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;
use tracing::{Instrument, debug, info_span, warn};

use super::{
    authz::{self, Grant},
    batch_codec::{BatchCodec, IncomingBatch},
    errors::{stream_ended, to_rpc_status},
    fields::{Fields, timestamp},
    pagination::{Page, REGISTRY_PAGES},
    records::{input_from_pb, record_kind_filter, record_to_pb},
};
use crate::{
    domain::{
        Idempotency,
        audit::WriteContext,
        check::{CheckedBatch, References, check_batch_shape, check_records},
        records::{RecordKey, RecordKind},
        submission::{RecordFilter, SubmitOutcome},
    },
    error::{Code, Error, FieldViolation, Result, reason},
    pb,
    startup::MAX_MESSAGE_BYTES,
    storage::Store,
    telemetry::metrics::metrics,
};

/// The idempotency method name of a batch, whether it came unary or streamed: the same
/// batch under the same request id is the same request either way.
const SUBMIT_METHOD: &str = "SubmitRecords";

/// Acknowledgements a stream may have computed but the client not yet read; beyond
/// this the server stops reading batches, so memory stays bounded.
const ACK_BUFFER: usize = 4;

#[derive(Debug, Clone)]
pub struct SubmissionApi {
    store: Arc<dyn Store>,
    /// Turns true when the server begins to shut down.
    draining: watch::Receiver<bool>,
}

impl SubmissionApi {
    pub fn new(store: Arc<dyn Store>, draining: watch::Receiver<bool>) -> Self {
        SubmissionApi { store, draining }
    }

    /// Checks and stores one batch: the one path for unary and streamed batches.
    async fn submit_batch(&self, grant: &Grant, batch: IncomingBatch) -> Result<SubmitOutcome> {
        let kinds = kinds_of(&batch.records);
        let result = match self.prepare_batch(grant, batch).await {
            Ok(Prepared::Done(outcome)) => return Ok(outcome),
            Ok(Prepared::Ready(checked, idem, validate_only)) => {
                commit(&self.store, checked, grant.write(idem).validating(validate_only)).await
            }
            Err(e) => Err(e),
        };
        count(&kinds, &result);
        result
    }

    /// Everything about a batch that needs no write: request checks, the caller's
    /// permission for every record, a replay of an earlier identical request, and the
    /// checks that need no stored records.
    async fn prepare_batch(&self, grant: &Grant, batch: IncomingBatch) -> Result<Prepared> {
        let IncomingBatch { request_id, records, shape, validate_only } = batch;
        let mut f = Fields::new();
        let request_id = f.request_id("request_id", &request_id);
        f.violations.extend(check_batch_shape(&shape));
        f.finish(reason::INVALID_RECORDS)?;

        let idem = request_id.map(|id| {
            // The fingerprint is over the records' canonical protobuf encoding, so an
            // identical retry matches however the client's encoder ordered the bytes.
            let mut content = Vec::with_capacity(records.iter().map(Message::encoded_len).sum::<usize>() + 8);
            for r in &records {
                // Encoding into a Vec cannot run out of room, the only way it can fail.
                let _ = r.encode_length_delimited(&mut content);
            }
            Idempotency::new(id, SUBMIT_METHOD, &content)
        });
        let inputs: Vec<_> = records.into_iter().map(input_from_pb).collect();
        // Before anything is read: a batch naming another agency is refused whole.
        grant.access.check_batch(&inputs)?;
        if let Some(idem) = &idem
            && let Some(done) = self.store.replay_submission(idem).await?
        {
            debug!("replayed a stored batch outcome");
            return Ok(Prepared::Done(done));
        }

        let known = self.store.known_ids(&References::of(&inputs)).await?;
        let checked = check_records(inputs, &known);
        if let Some(rejection) = checked.early_rejection() {
            return Err(rejection);
        }
        Ok(Prepared::Ready(checked, idem, validate_only))
    }
}

/// A batch's records by kind (in `RecordKind::ALL` order), for the metrics.
type KindCounts = [u32; 9];

fn kinds_of(records: &[pb::Record]) -> KindCounts {
    use pb::record::Kind;
    let mut counts = [0u32; 9];
    for r in records {
        let kind = match &r.kind {
            None => continue,
            Some(Kind::WorkforceReturn(_)) => RecordKind::WorkforceReturn,
            Some(Kind::ServiceContract(_)) => RecordKind::ServiceContract,
            Some(Kind::TeamComposition(_)) => RecordKind::TeamComposition,
            Some(Kind::SurveyResponse(_)) => RecordKind::SurveyResponse,
            Some(Kind::RelationshipRating(_)) => RecordKind::RelationshipRating,
            Some(Kind::PrinciplesAdoption(_)) => RecordKind::PrinciplesAdoption,
            Some(Kind::PrinciplesEndorsement(_)) => RecordKind::PrinciplesEndorsement,
            Some(Kind::RestructuringEvent(_)) => RecordKind::RestructuringEvent,
            Some(Kind::BudgetContribution(_)) => RecordKind::BudgetContribution,
        };
        if let Some(i) = RecordKind::ALL.iter().position(|k| *k == kind) {
            counts[i] += 1;
        }
    }
    counts
}

/// Counts a batch's records as accepted or, when the batch was refused for what it
/// holds, rejected (a server fault, or a batch only validated, counts as neither).
fn count(kinds: &KindCounts, result: &Result<SubmitOutcome>) {
    let named: Vec<(&'static str, u64)> =
        RecordKind::ALL.iter().zip(kinds).map(|(k, n)| (k.snake_name(), u64::from(*n))).collect();
    match result {
        Ok(outcome) if outcome.validated_only => {}
        Ok(_) => metrics().records(true, &named),
        Err(e) if !matches!(e.code, Code::Internal | Code::Unavailable) => metrics().records(false, &named),
        Err(_) => {}
    }
}

/// Stores a checked batch: the storage transaction, as a span of its own.
async fn commit(store: &Arc<dyn Store>, checked: CheckedBatch, ctx: WriteContext) -> Result<SubmitOutcome> {
    let span = info_span!("storage.submit_records", otel.kind = "client", db.system.name = store.backend());
    store.submit_records(checked, ctx).instrument(span).await
}

/// What the reading stage of a stream hands the writing stage.
enum Staged {
    Batch {
        batch_index: i64,
        request_id: String,
        kinds: KindCounts,
        prepared: Result<Prepared>,
    },
    /// No more batches are taken: the server is shutting down or the stream could
    /// not be read. Batches from `resume_at` on were not taken.
    Stop {
        resume_at: i64,
        cause: Box<Status>,
    },
}

/// A batch past the checks that need no write.
enum Prepared {
    /// An identical earlier request: its stored outcome.
    Done(SubmitOutcome),
    /// To be written (where the precondition checks are made), or with `true` only
    /// checked there.
    Ready(CheckedBatch, Option<Idempotency>, bool),
}

/// Completes once the server has begun to shut down.
async fn shutdown_begun(draining: &mut watch::Receiver<bool>) {
    if draining.wait_for(|d| *d).await.is_err() {
        // The sender lives as long as the server; without it nothing will drain.
        std::future::pending::<()>().await;
    }
}

fn outcome_to_pb(o: SubmitOutcome) -> pb::SubmitRecordsResponse {
    pb::SubmitRecordsResponse {
        record_count: o.record_count,
        inserted_count: o.inserted,
        replaced_count: o.replaced,
        commit_time: (!o.validated_only).then(|| timestamp(o.commit_time)),
        replayed: o.replayed,
    }
}

type IngestStream = Pin<Box<dyn Stream<Item = Result<pb::IngestRecordsResponse, Status>> + Send + 'static>>;

impl SubmissionApi {
    /// SubmitRecords.
    pub async fn submit_records(
        &self,
        grant: &Grant,
        batch: IncomingBatch,
    ) -> Result<pb::SubmitRecordsResponse> {
        Ok(outcome_to_pb(self.submit_batch(grant, batch).await?))
    }

    /// IngestRecords: acknowledgements in batch order, each after its commit. The
    /// stream never ends OK with a batch unanswered: if the stream cannot be read
    /// (or the server shuts down) it ends with a status naming the first batch not
    /// taken.
    pub fn ingest_records(&self, grant: Grant, mut inbound: Streaming<IncomingBatch>) -> IngestStream {
        let writer_grant = grant.clone();
        let (acks, rx) = mpsc::channel(ACK_BUFFER);
        // Two stages: one reads and checks the next batch while the other writes the
        // current one. The one-slot channel between them bounds memory (a batch being
        // read, one checked, one being written) and keeps batches in order, and each
        // acknowledgement is sent only after its batch committed.
        let (staged_tx, mut staged) = mpsc::channel::<Staged>(1);
        let api = self.clone();
        let mut draining = self.draining.clone();
        tokio::spawn(
            async move {
                let mut batch_index: i64 = 0;
                loop {
                    let next = tokio::select! {
                        biased;
                        () = shutdown_begun(&mut draining) => {
                            let cause = Box::new(Error::unavailable("the server is shutting down").into());
                            let _ = staged_tx.send(Staged::Stop { resume_at: batch_index, cause }).await;
                            break;
                        }
                        next = inbound.message() => next,
                    };
                    let batch = match next {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(cause) => {
                            debug!(%cause, batch_index, "an ingest stream could not be read");
                            let _ = staged_tx
                                .send(Staged::Stop { resume_at: batch_index, cause: Box::new(cause) })
                                .await;
                            break;
                        }
                    };
                    let request_id = batch.request_id.clone();
                    let kinds = kinds_of(&batch.records);
                    let prepared = api.prepare_batch(&grant, batch).await;
                    let item = Staged::Batch { batch_index, request_id, kinds, prepared };
                    if staged_tx.send(item).await.is_err() {
                        // The writer ended the stream.
                        break;
                    }
                    batch_index += 1;
                }
            }
            .in_current_span(),
        );
        let store = self.store.clone();
        tokio::spawn(
            async move {
                let _open = metrics().stream_opened();
                while let Some(item) = staged.recv().await {
                    let (batch_index, request_id, kinds, prepared) = match item {
                        Staged::Stop { resume_at, cause } => {
                            let _ = acks.send(Err(stream_ended(&cause, resume_at))).await;
                            break;
                        }
                        Staged::Batch { batch_index, request_id, kinds, prepared } => {
                            (batch_index, request_id, kinds, prepared)
                        }
                    };
                    let outcome = match prepared {
                        Ok(Prepared::Done(outcome)) => Ok(outcome),
                        Ok(Prepared::Ready(checked, idem, validate_only)) => {
                            let ctx = writer_grant.write(idem).validating(validate_only);
                            let result = commit(&store, checked, ctx).await;
                            count(&kinds, &result);
                            result
                        }
                        Err(e) => {
                            let result = Err(e);
                            count(&kinds, &result);
                            result
                        }
                    };
                    let result = match outcome {
                        Ok(outcome) => pb::ingest_records_response::Result::Accepted(outcome_to_pb(outcome)),
                        // A fault of the server, not of the batch: end the stream with
                        // it; the acknowledgements so far say what is durable.
                        Err(e) if matches!(e.code, Code::Internal | Code::Unavailable) => {
                            warn!(batch_index, "ending an ingest stream on a server error");
                            let _ = acks.send(Err(stream_ended(&e.into(), batch_index))).await;
                            break;
                        }
                        Err(e) => pb::ingest_records_response::Result::Rejected(to_rpc_status(e)),
                    };
                    let ack = pb::IngestRecordsResponse { batch_index, request_id, result: Some(result) };
                    if acks.send(Ok(ack)).await.is_err() {
                        debug!("ingest client went away");
                        break;
                    }
                }
            }
            .in_current_span(),
        );
        Box::pin(ReceiverStream::new(rx))
    }

    /// ListRecords.
    pub async fn list_records(
        &self,
        grant: &Grant,
        req: pb::ListRecordsRequest,
    ) -> Result<pb::ListRecordsResponse> {
        let mut f = Fields::new();
        let optional_id = |f: &mut Fields, path: &str, s: &str| {
            if s.is_empty() { Some(None) } else { f.id(path, s).map(Some) }
        };
        let partnership = optional_id(&mut f, "partnership", &req.partnership);
        let agency = optional_id(&mut f, "agency", &req.agency);
        let kind = record_kind_filter(req.kind);
        if kind.is_none() {
            f.fail("kind", "must be a RECORD_KIND_ value, such as RECORD_KIND_SURVEY_RESPONSE");
        }
        let start = if req.start_period.is_empty() {
            Some(None)
        } else {
            f.period("start_period", &req.start_period).map(Some)
        };
        let end = if req.end_period.is_empty() {
            Some(None)
        } else {
            f.period("end_period", &req.end_period).map(Some)
        };
        if let (Some(Some(s)), Some(Some(e))) = (start, end)
            && e.end() < s.start()
        {
            f.fail("end_period", "must not end before start_period starts");
        }
        let (Some(partnership), Some(agency), Some(kind), Some(start), Some(end), true) =
            (partnership, agency, kind, start, end, f.is_clean())
        else {
            return Err(f.into_error(reason::INVALID_REQUEST));
        };
        let filter = RecordFilter {
            partnership,
            kind,
            agency: authz::records_agency(&grant.access, agency)?,
            from: start.map(|p| p.start()),
            to: end.map(|p| p.end()),
        };
        let fingerprint = format!(
            "records:{}:{}:{}:{}:{}",
            req.partnership, req.kind, req.agency, req.start_period, req.end_period
        );
        let page = Page::parse(req.page_size, &req.page_token, REGISTRY_PAGES, fingerprint)?;
        let mut records = self.store.list_records(&filter, page.fetch()).await?;
        let next_page_token = page.finish(&mut records, |r| r.key.to_string());
        Ok(pb::ListRecordsResponse {
            records: records
                .into_iter()
                .map(|r| pb::StoredRecord {
                    key: r.key.to_string(),
                    record: Some(record_to_pb(&r.record)),
                    revision: r.revision,
                    update_time: Some(timestamp(r.update_time)),
                })
                .collect(),
            next_page_token,
        })
    }

    /// ListRecordRevisions.
    pub async fn list_record_revisions(
        &self,
        grant: &Grant,
        req: pb::ListRecordRevisionsRequest,
    ) -> Result<pb::ListRecordRevisionsResponse> {
        let key = RecordKey::parse(&req.key).map_err(|why| {
            Error::invalid(reason::INVALID_REQUEST, vec![FieldViolation::invalid("key", why)])
        })?;
        // A scoped caller sees its own agency's records only, and learns nothing of
        // whether another key exists.
        if let Some(own) = grant.access.agency()
            && self.store.record_reporting_agency(&key).await?.as_ref() != Some(own)
        {
            return Err(grant.access.denied(format_args!("record {key}")));
        }
        let page = Page::parse(req.page_size, &req.page_token, REGISTRY_PAGES, format!("revisions:{key}"))?;
        let mut revisions = self.store.list_record_revisions(&key, page.fetch()).await?;
        if revisions.is_empty() && page.after.is_none() {
            return Err(Error::not_found(reason::UNKNOWN_RECORD, format!("no record has the key {key}"))
                .with_metadata("key", key.to_string()));
        }
        let next_page_token = page.finish(&mut revisions, |r| r.revision.to_string());
        Ok(pb::ListRecordRevisionsResponse {
            revisions: revisions
                .into_iter()
                .map(|r| pb::RecordRevision {
                    key: r.key.to_string(),
                    revision: r.revision,
                    content: Some(record_to_pb(&r.record)),
                    previous_content: r.previous.as_ref().map(record_to_pb),
                    // The reporting agency as stated in the record.
                    submitting_agency: r.record.reporting_agency().to_string(),
                    request_id: r.request_id.unwrap_or_default(),
                    commit_time: Some(timestamp(r.commit_time)),
                    client_id: r.actor.as_ref().map(|a| a.client_id.clone()).unwrap_or_default(),
                    client_agency: r
                        .actor
                        .as_ref()
                        .and_then(|a| a.agency.as_ref())
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                })
                .collect(),
            next_page_token,
        })
    }
}

/// The `partnership.v1.SubmissionService` routes. Hand-written instead of the
/// generated server so that batches are decoded within bounds ([`BatchCodec`]):
/// the generated server would decode every record of a message before any limit
/// could be checked.
#[derive(Debug, Clone)]
pub struct SubmissionRoutes {
    api: Arc<SubmissionApi>,
}

impl SubmissionRoutes {
    pub fn new(api: SubmissionApi) -> Self {
        SubmissionRoutes { api: Arc::new(api) }
    }
}

impl NamedService for SubmissionRoutes {
    const NAME: &'static str = "partnership.v1.SubmissionService";
}

/// Runs a handler with the call's grant; the grant's absence refuses the call.
async fn with_grant<T, R>(
    request: tonic::Request<T>,
    handler: impl AsyncFnOnce(Grant, T) -> Result<R>,
) -> std::result::Result<tonic::Response<R>, Status> {
    let grant = authz::grant(&request)?;
    handler(grant, request.into_inner()).await.map(tonic::Response::new).map_err(Status::from)
}

impl<B> tower::Service<http::Request<B>> for SubmissionRoutes
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, std::result::Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let api = self.api.clone();
        let limit = MAX_MESSAGE_BYTES;
        match req.uri().path() {
            "/partnership.v1.SubmissionService/SubmitRecords" => Box::pin(async move {
                let method = tower::service_fn(move |r: tonic::Request<IncomingBatch>| {
                    let api = api.clone();
                    async move { with_grant(r, async |g, batch| api.submit_records(&g, batch).await).await }
                });
                let mut grpc = Grpc::new(BatchCodec::<pb::SubmitRecordsResponse>::default())
                    .max_decoding_message_size(limit);
                Ok(grpc.unary(method, req).await)
            }),
            "/partnership.v1.SubmissionService/IngestRecords" => Box::pin(async move {
                let method = tower::service_fn(move |r: tonic::Request<Streaming<IncomingBatch>>| {
                    let api = api.clone();
                    async move {
                        let grant = authz::grant(&r)?;
                        Ok::<_, Status>(tonic::Response::new(api.ingest_records(grant, r.into_inner())))
                    }
                });
                let mut grpc = Grpc::new(BatchCodec::<pb::IngestRecordsResponse>::default())
                    .max_decoding_message_size(limit);
                Ok(grpc.streaming(method, req).await)
            }),
            "/partnership.v1.SubmissionService/ListRecords" => Box::pin(async move {
                let method = tower::service_fn(move |r: tonic::Request<pb::ListRecordsRequest>| {
                    let api = api.clone();
                    async move { with_grant(r, async |g, req| api.list_records(&g, req).await).await }
                });
                Ok(Grpc::new(ProstCodec::default()).unary(method, req).await)
            }),
            "/partnership.v1.SubmissionService/ListRecordRevisions" => Box::pin(async move {
                let method = tower::service_fn(move |r: tonic::Request<pb::ListRecordRevisionsRequest>| {
                    let api = api.clone();
                    async move { with_grant(r, async |g, req| api.list_record_revisions(&g, req).await).await }
                });
                Ok(Grpc::new(ProstCodec::default()).unary(method, req).await)
            }),
            other => {
                let status = Error::unimplemented(format!("{other} is not a method of {}", Self::NAME));
                Box::pin(async move { Ok(Status::from(status).into_http()) })
            }
        }
    }
}
