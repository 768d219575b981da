//! SubmissionService. Not implemented yet: every method returns UNIMPLEMENTED with an
//! `ErrorInfo` (reason `NOT_IMPLEMENTED`) until the submission issue lands.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    error::Error,
    pb::{self, submission_service_server::SubmissionService},
    storage::Store,
};

#[derive(Debug, Clone)]
pub struct SubmissionApi {
    #[allow(dead_code)]
    store: Arc<dyn Store>,
}

impl SubmissionApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        SubmissionApi { store }
    }
}

fn unimplemented(method: &str) -> Status {
    Error::unimplemented(format!("{method} is not implemented yet")).into()
}

type IngestStream = Pin<Box<dyn Stream<Item = Result<pb::IngestRecordsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SubmissionService for SubmissionApi {
    async fn submit_records(
        &self,
        _request: Request<pb::SubmitRecordsRequest>,
    ) -> Result<Response<pb::SubmitRecordsResponse>, Status> {
        Err(unimplemented("SubmitRecords"))
    }

    type IngestRecordsStream = IngestStream;

    async fn ingest_records(
        &self,
        _request: Request<Streaming<pb::IngestRecordsRequest>>,
    ) -> Result<Response<Self::IngestRecordsStream>, Status> {
        Err(unimplemented("IngestRecords"))
    }

    async fn list_records(
        &self,
        _request: Request<pb::ListRecordsRequest>,
    ) -> Result<Response<pb::ListRecordsResponse>, Status> {
        Err(unimplemented("ListRecords"))
    }

    async fn list_record_revisions(
        &self,
        _request: Request<pb::ListRecordRevisionsRequest>,
    ) -> Result<Response<pb::ListRecordRevisionsResponse>, Status> {
        Err(unimplemented("ListRecordRevisions"))
    }
}
