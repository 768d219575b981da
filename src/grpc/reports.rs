//! ReportService. Not implemented yet: every method returns UNIMPLEMENTED with an
//! `ErrorInfo` (reason `NOT_IMPLEMENTED`) until the indicators issue lands.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    pb::{self, report_service_server::ReportService},
    storage::Store,
};

#[derive(Debug, Clone)]
pub struct ReportApi {
    #[allow(dead_code)]
    store: Arc<dyn Store>,
}

impl ReportApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ReportApi { store }
    }
}

fn unimplemented(method: &str) -> Status {
    Error::unimplemented(format!("{method} is not implemented yet")).into()
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportReportsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn get_partnership_report(
        &self,
        _request: Request<pb::GetPartnershipReportRequest>,
    ) -> Result<Response<pb::PartnershipReport>, Status> {
        Err(unimplemented("GetPartnershipReport"))
    }

    async fn list_partnership_reports(
        &self,
        _request: Request<pb::ListPartnershipReportsRequest>,
    ) -> Result<Response<pb::ListPartnershipReportsResponse>, Status> {
        Err(unimplemented("ListPartnershipReports"))
    }

    type ExportReportsStream = ExportStream;

    async fn export_reports(
        &self,
        _request: Request<pb::ExportReportsRequest>,
    ) -> Result<Response<Self::ExportReportsStream>, Status> {
        Err(unimplemented("ExportReports"))
    }
}
