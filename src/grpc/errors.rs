//! Domain errors as gRPC statuses (AIP-193): every non-OK status carries one
//! `google.rpc.ErrorInfo` (domain `partnership-metrics`), and a `google.rpc.BadRequest`
//! with one violation per bad field whenever fields are to blame.

use std::collections::HashMap;

use prost::Message;
use tonic::{Code as GrpcCode, Status};
use tonic_types::{ErrorDetails, FieldViolation as PbFieldViolation, StatusExt};
use tracing::error;

use crate::error::{Code, Error, ViolationKind, reason};

pub const ERROR_DOMAIN: &str = "partnership-metrics";

fn grpc_code(code: Code) -> GrpcCode {
    match code {
        Code::InvalidArgument => GrpcCode::InvalidArgument,
        Code::NotFound => GrpcCode::NotFound,
        Code::AlreadyExists => GrpcCode::AlreadyExists,
        Code::FailedPrecondition => GrpcCode::FailedPrecondition,
        Code::Unauthenticated => GrpcCode::Unauthenticated,
        Code::PermissionDenied => GrpcCode::PermissionDenied,
        Code::ResourceExhausted => GrpcCode::ResourceExhausted,
        Code::DeadlineExceeded => GrpcCode::DeadlineExceeded,
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

/// Most bytes a status may take in the response headers (`grpc-message` and the
/// base64 `grpc-status-details-bin`): under gRPC's common 8 KiB metadata limit, so
/// any client, a default grpcio one included, can read the error.
pub const MAX_STATUS_HEADER_BYTES: usize = 7 * 1024;

/// Longest violation description kept when a status must shrink to fit.
const SHORT_DESCRIPTION_CHARS: usize = 120;

/// Longest `grpc-message` sent.
const MAX_MESSAGE_BYTES: usize = 1024;

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// The header bytes a status takes: its message percent-encoded (at worst three
/// bytes a byte) and its details in base64.
fn header_bytes(status: &Status) -> usize {
    status.message().len() * 3 + status.details().len().div_ceil(3) * 4
}

/// Converts an error into a status. Internal errors are logged here, with their cause,
/// and leave the service without it. A status too big for the response headers keeps
/// its code, reason and first violations: descriptions are shortened, then
/// violations from the end are left out and counted in `omitted_violations`.
pub fn to_status(e: Error) -> Status {
    if e.code == Code::Internal {
        match &e.source {
            Some(source) => error!(error = format!("{source:#}"), "internal error"),
            None => error!(message = %e.message, "internal error"),
        }
    }
    let message = truncate(&e.message, MAX_MESSAGE_BYTES / 4);
    let mut violations: Vec<PbFieldViolation> = e
        .violations
        .iter()
        .map(|v| PbFieldViolation {
            field: v.field.clone(),
            description: v.description.clone(),
            reason: violation_reason(v.kind).to_string(),
            ..Default::default()
        })
        .collect();
    let mut omitted = e.omitted_violations;
    let build = |violations: &[PbFieldViolation], omitted: usize| {
        let mut metadata: HashMap<String, String> =
            e.metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if !e.violations.is_empty() {
            metadata.insert("omitted_violations".into(), omitted.to_string());
        }
        let mut details = ErrorDetails::with_error_info(e.reason, ERROR_DOMAIN, metadata);
        if !violations.is_empty() {
            details.set_bad_request(violations.to_vec());
        }
        if let Some(delay) = e.retry_after() {
            details.set_retry_info(Some(delay));
        }
        Status::with_error_details(grpc_code(e.code), message.clone(), details)
    };
    // Shrinking, least loss first: long descriptions shortened; then descriptions and
    // per-violation reasons dropped from the last violation backwards (every field
    // path stays listed); only then violations left out from the end, and counted.
    let mut status = build(&violations, omitted);
    if header_bytes(&status) > MAX_STATUS_HEADER_BYTES {
        for v in &mut violations {
            v.description = truncate(&v.description, SHORT_DESCRIPTION_CHARS);
        }
        status = build(&violations, omitted);
    }
    let mut bare = violations.len();
    while header_bytes(&status) > MAX_STATUS_HEADER_BYTES && bare > 0 {
        bare -= 1;
        violations[bare].description.clear();
        violations[bare].reason.clear();
        status = build(&violations, omitted);
    }
    while header_bytes(&status) > MAX_STATUS_HEADER_BYTES && !violations.is_empty() {
        violations.pop();
        omitted += 1;
        status = build(&violations, omitted);
    }
    status
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

/// For a status gRPC itself made (tonic's, without our `ErrorInfo`): the code the gRPC
/// status table gives it, the `ErrorInfo` reason it gets, and whether it is a fault of
/// the server rather than of the caller.
pub fn library_status(code: GrpcCode, message: &str) -> (GrpcCode, &'static str, bool) {
    match code {
        // A unary call without its one request message: the table's request
        // cardinality violation.
        GrpcCode::Internal if message == "Missing request message." => {
            (GrpcCode::Unimplemented, reason::MALFORMED_REQUEST, false)
        }
        // tonic's size limit; the table says RESOURCE_EXHAUSTED.
        GrpcCode::OutOfRange => (GrpcCode::ResourceExhausted, reason::MESSAGE_TOO_LARGE, false),
        // A request that could not be decoded: the table's INTERNAL, the caller's doing.
        GrpcCode::Internal => (GrpcCode::Internal, reason::MALFORMED_REQUEST, false),
        GrpcCode::Cancelled => (GrpcCode::Cancelled, reason::CANCELLED, false),
        GrpcCode::Unimplemented => (GrpcCode::Unimplemented, reason::NOT_IMPLEMENTED, false),
        GrpcCode::DeadlineExceeded => (GrpcCode::DeadlineExceeded, reason::DEADLINE_EXCEEDED, false),
        other => (other, reason::INTERNAL, true),
    }
}

/// The status that ends an IngestRecords stream early: the cause's code and
/// details, with the first batch the server did not take named in the message and in
/// the `ErrorInfo` metadata `first_batch_not_taken`, so the client knows where to
/// resume (every batch before it was answered).
pub fn stream_ended(cause: &Status, first_not_taken: i64) -> Status {
    let details = cause.get_error_details();
    let (code, reason, mut metadata) = match details.error_info() {
        Some(info) => (cause.code(), info.reason.clone(), info.metadata.clone()),
        None => {
            let (code, reason, _) = library_status(cause.code(), cause.message());
            (code, reason.to_string(), HashMap::new())
        }
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
    Status::with_error_details(code, message, out)
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

    fn long_violations(n: usize) -> Vec<(usize, FieldViolation)> {
        (0..n)
            .map(|i| {
                (
                    i,
                    FieldViolation::invalid(
                        format!("records[{i}].team_composition.entries[0].employer"),
                        "x".repeat(200),
                    ),
                )
            })
            .collect()
    }

    #[test]
    fn a_status_with_many_long_violations_fits_the_headers() {
        // Thirty: every path listed, the first with its (shortened) description.
        let status = to_status(Error::rejected(reason::INVALID_RECORDS, long_violations(30), 100));
        assert!(header_bytes(&status) <= MAX_STATUS_HEADER_BYTES, "{}", header_bytes(&status));
        let details = status.get_error_details();
        let listed = &details.bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), 30);
        assert_eq!(
            listed[0].description.chars().count(),
            SHORT_DESCRIPTION_CHARS + 1,
            "shortened, with an ellipsis"
        );
        assert_eq!(details.error_info().unwrap().metadata["omitted_violations"], "0");
        // A hundred: paths before descriptions, then the last counted, not listed.
        let status = to_status(Error::rejected(reason::INVALID_RECORDS, long_violations(100), 100));
        assert!(header_bytes(&status) <= MAX_STATUS_HEADER_BYTES, "{}", header_bytes(&status));
        let details = status.get_error_details();
        let listed = &details.bad_request().unwrap().field_violations;
        assert!(listed.len() >= 80, "{} of 100 paths listed", listed.len());
        assert_eq!(listed[0].field, "records[0].team_composition.entries[0].employer");
        let omitted: usize = details.error_info().unwrap().metadata["omitted_violations"].parse().unwrap();
        assert_eq!(listed.len() + omitted, 100, "every violation is listed or counted");
        // A small status is left as it is.
        let small = to_status(Error::invalid_field(reason::INVALID_REQUEST, "a", "is bad"));
        assert_eq!(
            small.get_error_details().bad_request().unwrap().field_violations[0].description,
            "is bad"
        );
    }

    #[test]
    fn when_paths_alone_overflow_the_last_are_counted_not_listed() {
        let violations: Vec<(usize, FieldViolation)> = (0..100)
            .map(|i| (i, FieldViolation::invalid(format!("records[{i}].{}", "p".repeat(120)), "bad")))
            .collect();
        let status = to_status(Error::rejected(reason::INVALID_RECORDS, violations, 100));
        assert!(header_bytes(&status) <= MAX_STATUS_HEADER_BYTES);
        let details = status.get_error_details();
        let kept = details.bad_request().unwrap().field_violations.len();
        let omitted: usize = details.error_info().unwrap().metadata["omitted_violations"].parse().unwrap();
        assert!(kept < 100 && kept > 10, "{kept}");
        assert_eq!(kept + omitted, 100);
    }

    #[test]
    fn rpc_status_round_trips_details() {
        let rpc = to_rpc_status(Error::not_found(reason::UNKNOWN_AGENCY, "no such agency"));
        assert_eq!(rpc.code, GrpcCode::NotFound as i32);
        assert_eq!(rpc.details.len(), 1);
    }
}
