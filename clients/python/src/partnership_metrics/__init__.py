"""Python client of the Partnership Metrics gRPC service.

    from partnership_metrics import Client, to_dataframe

    with Client("127.0.0.1:50051") as client:
        report = client.report("eastmoor", "2026Q3")
        frame = to_dataframe(client.export("2026Q3"))

The protobuf messages are in :mod:`partnership_metrics.pb`; the exceptions in
:mod:`partnership_metrics.errors` (also importable from here).
"""

from . import pb
from ._client import MAX_BATCH_RECORDS, Client, IngestAck, RecordLike, to_record
from .dataframe import COLUMNS, report_rows, to_dataframe
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded, FailedPrecondition,
                     FieldViolation, Internal, InvalidArgument, NotFound, OutOfRange, PartnershipMetricsError,
                     PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable, Unimplemented, Unknown)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "IngestAck",
    "RecordLike",
    "MAX_BATCH_RECORDS",
    "to_record",
    "to_dataframe",
    "report_rows",
    "COLUMNS",
    "pb",
    "PartnershipMetricsError",
    "FieldViolation",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
]
