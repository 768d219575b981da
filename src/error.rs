//! The service's error type: what went wrong in terms a caller can act on. The gRPC
//! adapter maps it to a `tonic::Status` with `ErrorInfo` and `BadRequest`; nothing here
//! knows about gRPC.

use std::fmt;

/// The category of a failure; each maps to one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// No credentials, or credentials that failed a check.
    Unauthenticated,
    /// Authenticated, but not allowed to do this.
    PermissionDenied,
    /// Too much at once: a limit of the server or of the request.
    ResourceExhausted,
    /// The caller's deadline passed.
    DeadlineExceeded,
    Unavailable,
    Unimplemented,
    Internal,
}

/// What a single bad field is charged with. The category decides the status of a
/// rejected request that has violations of several kinds (methodology 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Does not depend on stored state: INVALID_ARGUMENT.
    Invalid,
    /// Names an unknown partnership: NOT_FOUND.
    UnknownPartnership,
    /// Names an unknown agency: NOT_FOUND.
    UnknownAgency,
    /// Contradicts stored records: FAILED_PRECONDITION.
    Precondition,
}

/// One bad field, named by its path in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
    pub kind: ViolationKind,
}

impl FieldViolation {
    pub fn invalid(field: impl Into<String>, description: impl fmt::Display) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.to_string(),
            kind: ViolationKind::Invalid,
        }
    }

    pub fn new(field: impl Into<String>, kind: ViolationKind, description: impl fmt::Display) -> Self {
        FieldViolation { field: field.into(), description: description.to_string(), kind }
    }
}

/// Reasons (`google.rpc.ErrorInfo.reason`), UPPER_SNAKE_CASE, stable for clients.
pub mod reason {
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const INVALID_RECORDS: &str = "INVALID_RECORDS";
    pub const INVALID_REPORT_REQUEST: &str = "INVALID_REPORT_REQUEST";
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    pub const UNKNOWN_AGENCY: &str = "UNKNOWN_AGENCY";
    pub const UNKNOWN_PARTNERSHIP: &str = "UNKNOWN_PARTNERSHIP";
    pub const UNKNOWN_MEMBERSHIP: &str = "UNKNOWN_MEMBERSHIP";
    pub const UNKNOWN_RECORD: &str = "UNKNOWN_RECORD";
    pub const AGENCY_EXISTS: &str = "AGENCY_EXISTS";
    pub const PARTNERSHIP_EXISTS: &str = "PARTNERSHIP_EXISTS";
    pub const MEMBERSHIP_EXISTS: &str = "MEMBERSHIP_EXISTS";
    pub const PRECONDITION_FAILED: &str = "PRECONDITION_FAILED";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    // Why a caller is UNAUTHENTICATED.
    pub const CREDENTIALS_MISSING: &str = "CREDENTIALS_MISSING";
    pub const CREDENTIALS_MALFORMED: &str = "CREDENTIALS_MALFORMED";
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    pub const TOKEN_NOT_YET_VALID: &str = "TOKEN_NOT_YET_VALID";
    pub const TOKEN_WRONG_ISSUER: &str = "TOKEN_WRONG_ISSUER";
    pub const TOKEN_WRONG_AUDIENCE: &str = "TOKEN_WRONG_AUDIENCE";
    pub const TOKEN_UNKNOWN_KEY: &str = "TOKEN_UNKNOWN_KEY";
    pub const TOKEN_INVALID_CLAIMS: &str = "TOKEN_INVALID_CLAIMS";
    pub const CERTIFICATE_UNRECOGNISED: &str = "CERTIFICATE_UNRECOGNISED";
    pub const NOT_IMPLEMENTED: &str = "NOT_IMPLEMENTED";
    pub const INTERNAL: &str = "INTERNAL";
    /// Shed: too many calls in progress.
    pub const OVERLOADED: &str = "OVERLOADED";
    /// A request message over its method's size limit.
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// The server holds as many request bytes as its budget allows.
    pub const MEMORY_BUDGET: &str = "MEMORY_BUDGET";
    pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
    /// A request message that could not be decoded.
    pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
    /// The caller went away, or cancelled.
    pub const CANCELLED: &str = "CANCELLED";
}

/// A failed request.
#[derive(Debug)]
pub struct Error {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    /// Bad fields, for INVALID_ARGUMENT, NOT_FOUND and FAILED_PRECONDITION.
    pub violations: Vec<FieldViolation>,
    /// How many further violations were left out of `violations`.
    pub omitted_violations: usize,
    /// Extra `ErrorInfo` metadata, such as the id that was not found.
    pub metadata: Vec<(&'static str, String)>,
    /// The cause of an internal error: logged, never sent to the caller.
    pub source: Option<anyhow::Error>,
    /// Milliseconds the caller should wait before retrying (`google.rpc.RetryInfo`);
    /// kept small so that results carrying an `Error` stay small.
    retry_after_ms: Option<u32>,
}

impl Error {
    /// A copy of one failure for another caller that shared the work that failed:
    /// the same status, details and retry delay; the cause (logged by each caller)
    /// as its text.
    pub fn duplicate(&self) -> Error {
        Error {
            code: self.code,
            reason: self.reason,
            message: self.message.clone(),
            violations: self.violations.clone(),
            omitted_violations: self.omitted_violations,
            metadata: self.metadata.clone(),
            source: self.source.as_ref().map(|s| anyhow::anyhow!("{s:#}")),
            retry_after_ms: self.retry_after_ms,
        }
    }

    fn plain(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Error {
            code,
            reason,
            message: message.into(),
            violations: Vec::new(),
            omitted_violations: 0,
            metadata: Vec::new(),
            source: None,
            retry_after_ms: None,
        }
    }

    /// INVALID_ARGUMENT with one or more bad fields.
    pub fn invalid(reason: &'static str, violations: Vec<FieldViolation>) -> Self {
        let message = summary("invalid request", &violations);
        Error { violations, ..Error::plain(Code::InvalidArgument, reason, message) }
    }

    pub fn invalid_field(reason: &'static str, field: &str, description: impl fmt::Display) -> Self {
        Error::invalid(reason, vec![FieldViolation::invalid(field, description)])
    }

    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Error::plain(Code::NotFound, reason, message)
    }

    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> Self {
        Error::plain(Code::AlreadyExists, reason, message)
    }

    pub fn request_id_reused() -> Self {
        Error::invalid(
            reason::REQUEST_ID_REUSED,
            vec![FieldViolation::invalid("request_id", "was already used for a different request")],
        )
    }

    /// UNAUTHENTICATED: `reason` says which check the credentials failed. The message
    /// never repeats the credentials.
    pub fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Self {
        Error::plain(Code::Unauthenticated, reason, message)
    }

    /// PERMISSION_DENIED, naming the permission that is missing (AIP-211). Decided
    /// before any existence check, so the message is the same whether or not the
    /// resource exists.
    pub fn permission_denied(permission: &str, message: impl Into<String>) -> Self {
        Error::plain(Code::PermissionDenied, reason::PERMISSION_DENIED, message)
            .with_metadata("permission", permission)
    }

    /// RESOURCE_EXHAUSTED: a limit was reached; `retry_after` when waiting helps.
    pub fn resource_exhausted(
        reason: &'static str,
        message: impl Into<String>,
        retry_after: Option<std::time::Duration>,
    ) -> Self {
        let retry_after_ms = retry_after.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        Error { retry_after_ms, ..Error::plain(Code::ResourceExhausted, reason, message) }
    }

    /// How long the caller should wait before retrying, when that helps.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms)))
    }

    pub fn deadline_exceeded() -> Self {
        Error::plain(
            Code::DeadlineExceeded,
            reason::DEADLINE_EXCEEDED,
            "the caller's deadline (grpc-timeout) passed",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::plain(Code::Unavailable, reason::UNAVAILABLE, message)
    }

    pub fn unimplemented(message: impl Into<String>) -> Self {
        Error::plain(Code::Unimplemented, reason::NOT_IMPLEMENTED, message)
    }

    pub fn internal(source: anyhow::Error) -> Self {
        Error { source: Some(source), ..Error::plain(Code::Internal, reason::INTERNAL, "internal error") }
    }

    /// A request rejected for its bad fields, with the status chosen as methodology
    /// 2.4 prescribes: INVALID_ARGUMENT if any violation does not depend on stored
    /// state, else NOT_FOUND if any names an unknown partnership or agency, else
    /// FAILED_PRECONDITION. Violations are sorted by `order` (record index, then path
    /// bytes) and capped at `limit`.
    pub fn rejected(
        invalid_reason: &'static str,
        mut violations: Vec<(usize, FieldViolation)>,
        limit: usize,
    ) -> Self {
        let has = |k: ViolationKind| violations.iter().any(|(_, v)| v.kind == k);
        let (code, reason) = if has(ViolationKind::Invalid) {
            (Code::InvalidArgument, invalid_reason)
        } else if has(ViolationKind::UnknownPartnership) {
            (Code::NotFound, reason::UNKNOWN_PARTNERSHIP)
        } else if has(ViolationKind::UnknownAgency) {
            (Code::NotFound, reason::UNKNOWN_AGENCY)
        } else {
            (Code::FailedPrecondition, reason::PRECONDITION_FAILED)
        };
        violations
            .sort_by(|(ia, a), (ib, b)| ia.cmp(ib).then_with(|| a.field.as_bytes().cmp(b.field.as_bytes())));
        let total = violations.len();
        let listed: Vec<FieldViolation> = violations.into_iter().take(limit).map(|(_, v)| v).collect();
        let message = summary(
            match code {
                Code::InvalidArgument => "invalid request",
                Code::NotFound => "unknown reference",
                _ => "precondition failed",
            },
            &listed,
        );
        let message = if total > 1 { format!("{message} (and {} more)", total - 1) } else { message };
        Error {
            violations: listed,
            omitted_violations: total.saturating_sub(limit),
            ..Error::plain(code, reason, message)
        }
    }

    pub fn with_metadata(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }
}

fn summary(what: &str, violations: &[FieldViolation]) -> String {
    match violations.first() {
        Some(v) => format!("{what}: {} {}", v.field, v.description),
        None => what.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// Storage and other infrastructure failures are internal errors with their cause.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::internal(anyhow::Error::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(i: usize, field: &str, kind: ViolationKind) -> (usize, FieldViolation) {
        (i, FieldViolation::new(field, kind, "is bad"))
    }

    #[test]
    fn status_follows_the_most_basic_violation() {
        let e = Error::rejected(
            reason::INVALID_RECORDS,
            vec![v(1, "b", ViolationKind::Precondition), v(0, "a", ViolationKind::Invalid)],
            100,
        );
        assert_eq!((e.code, e.reason), (Code::InvalidArgument, reason::INVALID_RECORDS));
        let e = Error::rejected(
            reason::INVALID_RECORDS,
            vec![v(0, "a", ViolationKind::UnknownAgency), v(1, "b", ViolationKind::UnknownPartnership)],
            100,
        );
        assert_eq!((e.code, e.reason), (Code::NotFound, reason::UNKNOWN_PARTNERSHIP));
        let e = Error::rejected(
            reason::INVALID_RECORDS,
            vec![v(0, "a", ViolationKind::UnknownAgency), v(1, "b", ViolationKind::Precondition)],
            100,
        );
        assert_eq!((e.code, e.reason), (Code::NotFound, reason::UNKNOWN_AGENCY));
        let e = Error::rejected(reason::INVALID_RECORDS, vec![v(0, "a", ViolationKind::Precondition)], 100);
        assert_eq!((e.code, e.reason), (Code::FailedPrecondition, reason::PRECONDITION_FAILED));
    }

    #[test]
    fn violations_are_ordered_by_record_then_path_bytes_and_capped() {
        let e = Error::rejected(
            reason::INVALID_RECORDS,
            vec![
                v(2, "records[2].x", ViolationKind::Invalid),
                v(10, "records[10].a", ViolationKind::Invalid),
                v(2, "records[2].B", ViolationKind::Invalid),
            ],
            2,
        );
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["records[2].B", "records[2].x"]);
        assert_eq!(e.omitted_violations, 1);
    }
}
