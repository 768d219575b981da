"""Exceptions for failed calls, with the service's rich error details decoded.

Every error the service returns carries a ``google.rpc.ErrorInfo`` (domain
``partnership-metrics``, a machine-readable ``reason`` and ``metadata``) and, for
INVALID_ARGUMENT, a ``google.rpc.BadRequest`` naming each bad field by its path (for
example ``records[3].workforce_return.leavers``). They arrive in the
``grpc-status-details-bin`` trailer, or, for a rejected IngestRecords batch, in the
acknowledgement's ``rejected`` status; both become a :class:`PartnershipMetricsError`
of the subclass for the gRPC code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Type, cast

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "FieldViolation",
    "PartnershipMetricsError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "error_from_rpc_error",
    "error_from_status",
]

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_CODES_BY_NUMBER: Dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request and what is wrong with it."""

    field: str
    description: str


class PartnershipMetricsError(Exception):
    """A call the service refused or could not complete.

    Attributes:
        code: The gRPC status code, e.g. ``grpc.StatusCode.INVALID_ARGUMENT``.
        message: The status message.
        reason: ``ErrorInfo.reason``, e.g. ``INVALID_RECORDS``; empty when the status
            carried no ErrorInfo (e.g. a connection failure).
        domain: ``ErrorInfo.domain`` (``partnership-metrics``), or empty.
        metadata: ``ErrorInfo.metadata``, e.g. ``{"omitted_violations": "0"}``.
        field_violations: The ``BadRequest`` violations, in the order the service
            listed them.
        status: The decoded ``google.rpc.Status``, when there was one.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Optional[Mapping[str, str]] = None,
        field_violations: Sequence[FieldViolation] = (),
        *,
        domain: str = "",
        status: Optional[status_pb2.Status] = None,
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Dict[str, str] = dict(metadata or {})
        self.field_violations: List[FieldViolation] = list(field_violations)
        self.status = status
        super().__init__(str(self))

    @property
    def fields(self) -> List[str]:
        """The paths of the bad fields, e.g. ``["records[4].relationship_rating.ratee"]``."""
        return [v.field for v in self.field_violations]

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" [{self.reason}]"
        # The service's message usually names the first violations already.
        unnamed = [v for v in self.field_violations if v.field not in self.message]
        if unnamed:
            text += " (" + "; ".join(f"{v.field}: {v.description}" if v.description else v.field
                                     for v in unnamed) + ")"
        return text

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code.name}, message={self.message!r}, "
                f"reason={self.reason!r}, metadata={self.metadata!r}, fields={self.fields!r})")


class Cancelled(PartnershipMetricsError):
    """CANCELLED."""


class Unknown(PartnershipMetricsError):
    """UNKNOWN."""


class InvalidArgument(PartnershipMetricsError):
    """INVALID_ARGUMENT: the request itself is wrong; see ``field_violations``."""


class DeadlineExceeded(PartnershipMetricsError):
    """DEADLINE_EXCEEDED."""


class NotFound(PartnershipMetricsError):
    """NOT_FOUND: an unknown agency or partnership (``reason`` says which)."""


class AlreadyExists(PartnershipMetricsError):
    """ALREADY_EXISTS: the id is taken."""


class PermissionDenied(PartnershipMetricsError):
    """PERMISSION_DENIED: the caller's role or agency does not allow the call."""


class ResourceExhausted(PartnershipMetricsError):
    """RESOURCE_EXHAUSTED: too large a message or too many requests."""


class FailedPrecondition(PartnershipMetricsError):
    """FAILED_PRECONDITION: the records contradict stored state."""


class Aborted(PartnershipMetricsError):
    """ABORTED."""


class OutOfRange(PartnershipMetricsError):
    """OUT_OF_RANGE."""


class Unimplemented(PartnershipMetricsError):
    """UNIMPLEMENTED."""


class Internal(PartnershipMetricsError):
    """INTERNAL."""


class Unavailable(PartnershipMetricsError):
    """UNAVAILABLE: the server cannot be reached or is shutting down; retry later."""


class DataLoss(PartnershipMetricsError):
    """DATA_LOSS."""


class Unauthenticated(PartnershipMetricsError):
    """UNAUTHENTICATED: no token, or a token the server does not accept."""


_CLASSES: Dict[grpc.StatusCode, Type[PartnershipMetricsError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def _build(code: grpc.StatusCode, message: str, status: Optional[status_pb2.Status]) -> PartnershipMetricsError:
    reason, domain = "", ""
    metadata: Dict[str, str] = {}
    violations: List[FieldViolation] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    cls = _CLASSES.get(code, PartnershipMetricsError)
    return cls(code, message, reason, metadata, violations, domain=domain, status=status)


def error_from_status(status: status_pb2.Status) -> PartnershipMetricsError:
    """The exception a ``google.rpc.Status`` stands for (e.g. a rejected batch's)."""
    code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    return _build(code, status.message, status)


def error_from_rpc_error(err: grpc.RpcError) -> PartnershipMetricsError:
    """The exception for a failed grpcio call, its ``grpc-status-details-bin`` decoded."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    status = None
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in cast(Iterable[Any], trailers or ()):  # (key, value) pairs
        if key == _STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            break
    return _build(code or grpc.StatusCode.UNKNOWN, message or "", status)
