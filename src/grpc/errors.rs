//! Domain errors as gRPC statuses (AIP-193): every non-OK status carries one
//! `google.rpc.ErrorInfo` (domain `partnership-metrics`), and a `google.rpc.BadRequest`
//! with one violation per bad field whenever fields are to blame.

use std::collections::HashMap;

use prost::Message;
use tonic::{Code as GrpcCode, Status};
use tonic_types::{ErrorDetails, FieldViolation as PbFieldViolation, StatusExt};
use tracing::error;

use crate::error::{Code, Error, ViolationKind};

pub const ERROR_DOMAIN: &str = "partnership-metrics";

fn grpc_code(code: Code) -> GrpcCode {
    match code {
        Code::InvalidArgument => GrpcCode::InvalidArgument,
        Code::NotFound => GrpcCode::NotFound,
        Code::AlreadyExists => GrpcCode::AlreadyExists,
        Code::FailedPrecondition => GrpcCode::FailedPrecondition,
        Code::Unauthenticated => GrpcCode::Unauthenticated,
        Code::PermissionDenied => GrpcCode::PermissionDenied,
        Code::Unavailable => GrpcCode::Unavailable,
        Code::Unimplemented => GrpcCode::Unimplemented,
        Code::Internal => GrpcCode::Internal,
    }
}

fn violation_reason(kind: ViolationKind) -> &'static str {
    match kind {
        ViolationKind::Invalid => "INVALID_FIELD",
        ViolationKind::UnknownPartnership => "UNKNOWN_PARTNERSHIP",
        ViolationKind::UnknownAgency => "UNKNOWN_AGENCY",
        ViolationKind::Precondition => "PRECONDITION_FAILED",
    }
}

/// Converts an error into a status. Internal errors are logged here, with their cause,
/// and leave the service without it.
pub fn to_status(e: Error) -> Status {
    if e.code == Code::Internal {
        match &e.source {
            Some(source) => error!(error = format!("{source:#}"), "internal error"),
            None => error!(message = %e.message, "internal error"),
        }
    }
    let mut metadata: HashMap<String, String> =
        e.metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    if !e.violations.is_empty() {
        metadata.insert("omitted_violations".into(), e.omitted_violations.to_string());
    }
    let mut details = ErrorDetails::with_error_info(e.reason, ERROR_DOMAIN, metadata);
    if !e.violations.is_empty() {
        let violations: Vec<PbFieldViolation> = e
            .violations
            .iter()
            .map(|v| PbFieldViolation {
                field: v.field.clone(),
                description: v.description.clone(),
                reason: violation_reason(v.kind).to_string(),
                ..Default::default()
            })
            .collect();
        details.set_bad_request(violations);
    }
    Status::with_error_details(grpc_code(e.code), e.message, details)
}

/// The same error as a `google.rpc.Status` message, for errors carried inside a
/// response (a rejected batch of a stream).
pub fn to_rpc_status(e: Error) -> tonic_types::pb::Status {
    let status = to_status(e);
    // `Status::with_error_details` encodes exactly a google.rpc.Status into the details
    // bytes; decoding them back gives code, message and details in one message.
    tonic_types::pb::Status::decode(status.details()).unwrap_or_else(|_| tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details: Vec::new(),
    })
}

/// The status that ends an IngestRecords stream early: the cause's code and
/// details, with the first batch the server did not take named in the message and in
/// the `ErrorInfo` metadata `first_batch_not_taken`, so the client knows where to
/// resume (every batch before it was answered).
pub fn stream_ended(cause: &Status, first_not_taken: i64) -> Status {
    let details = cause.get_error_details();
    let (reason, mut metadata) = match details.error_info() {
        Some(info) => (info.reason.clone(), info.metadata.clone()),
        None => (crate::error::reason::STREAM_BROKEN.to_string(), HashMap::new()),
    };
    metadata.insert("first_batch_not_taken".into(), first_not_taken.to_string());
    let message = format!(
        "{}; batches before index {first_not_taken} were answered, resend from {first_not_taken}",
        cause.message()
    );
    let mut out = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    if let Some(retry) = details.retry_info() {
        out.set_retry_info(retry.retry_delay);
    }
    Status::with_error_details(cause.code(), message, out)
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        to_status(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{FieldViolation, reason};

    #[test]
    fn invalid_argument_carries_error_info_and_bad_request() {
        let status = to_status(Error::invalid(
            reason::INVALID_REQUEST,
            vec![FieldViolation::invalid("agency.display_name", "is required")],
        ));
        assert_eq!(status.code(), GrpcCode::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_REQUEST");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["omitted_violations"], "0");
        let bad = details.bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations[0].field, "agency.display_name");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = to_status(Error::internal(anyhow::anyhow!("disk on fire at /secret/path")));
        assert_eq!(status.code(), GrpcCode::Internal);
        assert!(!status.message().contains("secret"));
        assert_eq!(status.get_error_details().error_info().unwrap().reason, "INTERNAL");
    }

    #[test]
    fn rpc_status_round_trips_details() {
        let rpc = to_rpc_status(Error::not_found(reason::UNKNOWN_AGENCY, "no such agency"));
        assert_eq!(rpc.code, GrpcCode::NotFound as i32);
        assert_eq!(rpc.details.len(), 1);
    }
}
