"""The client: one channel to the service, and one method per thing a data team does."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar,
                    Union)

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from . import pb
from .errors import PartnershipMetricsError, Unavailable, error_from_rpc_error, error_from_status

__all__ = ["Client", "IngestAck", "RecordLike", "to_record"]

#: What the submit methods take as a record: a ``pb.Record``, one of the nine kind
#: messages (``pb.WorkforceReturn(...)``, ...), or a dict in the proto's field names
#: such as ``{"workforce_return": {"partnership": "pa", ...}}``.
RecordLike = Union["pb.Record", Message, Mapping[str, Any]]

#: The most records a batch may hold (SubmissionService).
MAX_BATCH_RECORDS = 10_000
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_KIND_FIELD_BY_TYPE: Dict[str, str] = {
    field.message_type.full_name: field.name
    for field in pb.Record.DESCRIPTOR.oneofs_by_name["kind"].fields
    if field.message_type is not None
}

T = TypeVar("T")


def to_record(value: RecordLike) -> "pb.Record":
    """A ``pb.Record`` from a record, a kind message or a dict (see :data:`RecordLike`)."""
    if isinstance(value, pb.Record):
        return value
    if isinstance(value, Message):
        field = _KIND_FIELD_BY_TYPE.get(value.DESCRIPTOR.full_name)
        if field is None:
            raise TypeError(f"{value.DESCRIPTOR.full_name} is not a record kind")
        record = pb.Record()
        getattr(record, field).CopyFrom(value)
        return record
    if isinstance(value, Mapping):
        return json_format.ParseDict(dict(value), pb.Record())
    raise TypeError(f"not a record: {type(value).__name__}")


def _enum_value(enum: Any, value: Union[int, str], prefix: str) -> Any:
    """An enum number from a number or a name with or without its prefix, any case."""
    if isinstance(value, str):
        name = value.upper()
        if not name.startswith(prefix):
            name = prefix + name
        try:
            return int(enum.Value(name))
        except ValueError:
            known = ", ".join(n[len(prefix):].lower() for n in enum.keys() if not n.endswith("UNSPECIFIED"))
            raise ValueError(f"unknown {prefix.rstrip('_').lower()} {value!r}; one of: {known}") from None
    return int(value)


def _resource(collection: str, value: str) -> str:
    return value if value.startswith(collection + "/") else f"{collection}/{value}"


@dataclass(frozen=True)
class IngestAck:
    """The service's answer to one batch of :meth:`Client.ingest`.

    Attributes:
        batch_index: Position of the batch in the stream, from 0.
        request_id: The batch's request id (empty when it had none).
        record_count: How many records this client sent in the batch.
        accepted: The ``SubmitRecordsResponse`` of a committed (durable) batch, or None.
        error: The rejection of a batch of which nothing was stored, as the exception
            a ``submit`` of it would have raised (not raised: the stream goes on), or
            None.
    """

    batch_index: int
    request_id: str
    record_count: int
    accepted: Optional["pb.SubmitRecordsResponse"]
    error: Optional[PartnershipMetricsError]

    @property
    def ok(self) -> bool:
        """True when the batch was accepted."""
        return self.error is None


class Client:
    """A connection to a Partnership Metrics server.

    Args:
        target: ``host:port`` (an ``http://`` or ``https://`` prefix is accepted;
            ``https://`` without ``ca_cert`` uses the system's root certificates).
        token: A bearer token (JWT), sent as ``authorization: Bearer <token>`` on
            every call.
        ca_cert: Path to the PEM file of the CA that signed the server's certificate
            (or the PEM bytes). Given, the connection uses TLS; otherwise plaintext.
        server_name: The name to check the server's certificate against, when it
            differs from the host in ``target``.
        timeout: Deadline in seconds of each unary call (None: no deadline).
        options: Extra grpcio channel options.

    Use it as a context manager (``with Client(...) as client:``) or call
    :meth:`close`. Every failed call raises a
    :class:`~partnership_metrics.errors.PartnershipMetricsError` subclass.
    """

    def __init__(
        self,
        target: str,
        token: Optional[str] = None,
        ca_cert: Union[str, "os.PathLike[str]", bytes, None] = None,
        server_name: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
        options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        scheme, _, rest = target.partition("://")
        if not rest:
            scheme, rest = "", target
        if scheme not in ("", "http", "https"):
            raise ValueError(f"unsupported scheme in target {target!r}: use host:port or https://host:port")
        self.target = rest.rstrip("/")
        self._timeout = timeout
        channel_options: List[Tuple[str, Any]] = [
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            *options,
        ]
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        if ca_cert is not None or scheme == "https":
            roots = None
            if isinstance(ca_cert, bytes):
                roots = ca_cert
            elif ca_cert is not None:
                with open(ca_cert, "rb") as f:
                    roots = f.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.secure_channel(self.target, credentials, options=channel_options)
        else:
            self._channel = grpc.insecure_channel(self.target, options=channel_options)
        self._metadata: Tuple[Tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._registry = pb.registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._submission = pb.submission_pb2_grpc.SubmissionServiceStub(self._channel)
        self._reports = pb.reports_pb2_grpc.ReportServiceStub(self._channel)

    @classmethod
    def from_env(cls, **kwargs: Any) -> "Client":
        """A client configured like the ``partnership-metrics`` command line: from
        ``PM_TARGET``, ``PM_TOKEN`` or ``PM_TOKEN_FILE``, ``PM_CA_CERT`` and
        ``PM_TLS_SERVER_NAME``. Keyword arguments override them."""
        settings: Dict[str, Any] = {"target": os.environ.get("PM_TARGET", "127.0.0.1:50051")}
        token = os.environ.get("PM_TOKEN")
        if not token and os.environ.get("PM_TOKEN_FILE"):
            with open(os.environ["PM_TOKEN_FILE"], encoding="utf-8") as f:
                token = f.read().strip()
        settings["token"] = token or None
        settings["ca_cert"] = os.environ.get("PM_CA_CERT") or None
        settings["server_name"] = os.environ.get("PM_TLS_SERVER_NAME") or None
        settings.update(kwargs)
        return cls(**settings)

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Waits until the channel is connected; raises Unavailable after ``timeout`` s."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, f"{self.target} not reachable in {timeout} s") from None

    # -- plumbing --------------------------------------------------------------

    def _unary(self, method: Callable[..., T], request: Message) -> T:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as err:
            raise error_from_rpc_error(err) from None

    def _stream(self, call: Any) -> Iterator[Any]:
        try:
            yield from call
        except grpc.RpcError as err:
            raise error_from_rpc_error(err) from None
        finally:
            call.cancel()

    def _pages(self, method: Callable[..., Any], request: Any, field: str) -> Iterator[Any]:
        while True:
            response = self._unary(method, request)
            yield from getattr(response, field)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    # -- submission ------------------------------------------------------------

    def submit(
        self, records: Iterable[RecordLike], validate_only: bool = False, request_id: Optional[str] = None
    ) -> "pb.SubmitRecordsResponse":
        """Stores one batch of 1 to 10,000 records atomically (SubmitRecords).

        Args:
            records: The records (see :data:`RecordLike`).
            validate_only: Check the batch and answer as a write would, storing nothing.
            request_id: Idempotency key: a retry with the same id and records returns
                the first answer (``replayed`` True) and stores nothing again.

        Returns:
            The ``SubmitRecordsResponse``: ``record_count``, ``inserted_count``,
            ``replaced_count``, ``commit_time`` (unset when ``validate_only``), ``replayed``.

        Raises:
            InvalidArgument: bad records (reason ``INVALID_RECORDS``; ``fields`` names
                each, e.g. ``records[3].workforce_return.leavers``).
            NotFound: an unknown partnership or agency.
            FailedPrecondition: records that contradict stored ones.
        """
        request = pb.SubmitRecordsRequest(
            records=[to_record(r) for r in records], validate_only=validate_only, request_id=request_id or ""
        )
        return self._unary(self._submission.SubmitRecords, request)

    def ingest(
        self,
        records: Iterable[RecordLike],
        batch_size: int = 1000,
        request_id_prefix: Optional[str] = None,
        validate_only: bool = False,
    ) -> Iterator[IngestAck]:
        """Streams records in batches over one IngestRecords call, lazily.

        ``records`` is read as the stream goes (a generator over a large file is
        fine) and cut into batches of ``batch_size`` (1 to 10,000). Each batch is
        stored atomically, or rejected whole without ending the stream.

        Args:
            records: The records (see :data:`RecordLike`).
            batch_size: Records per batch.
            request_id_prefix: Given, batch ``i`` gets request id ``f"{prefix}-{i}"``,
                so re-running the same load replays the batches already committed.
            validate_only: Check every batch, store none.

        Yields:
            One :class:`IngestAck` per batch, in order: ``ack.accepted`` for a durable
            batch, ``ack.error`` (a PartnershipMetricsError, not raised) for a rejected one.

        Raises:
            PartnershipMetricsError: when the stream itself fails; every batch before
                ``metadata["first_batch_not_taken"]`` was answered.
        """
        if not 1 <= batch_size <= MAX_BATCH_RECORDS:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_RECORDS}, not {batch_size}")
        sizes: Dict[int, int] = {}
        failures: List[Exception] = []

        def requests() -> Iterator["pb.IngestRecordsRequest"]:
            source = iter(records)
            try:
                for index in itertools.count():
                    batch = [to_record(r) for r in itertools.islice(source, batch_size)]
                    if not batch:
                        return
                    sizes[index] = len(batch)
                    yield pb.IngestRecordsRequest(
                        records=batch,
                        validate_only=validate_only,
                        request_id=f"{request_id_prefix}-{index}" if request_id_prefix else "",
                    )
            except Exception as exc:  # grpcio would only log it and cancel the call
                failures.append(exc)
                raise

        call = self._submission.IngestRecords(requests(), metadata=self._metadata)
        try:
            for answer in call:
                result = answer.WhichOneof("result")
                yield IngestAck(
                    batch_index=answer.batch_index,
                    request_id=answer.request_id,
                    record_count=sizes.get(answer.batch_index, 0),
                    accepted=answer.accepted if result == "accepted" else None,
                    error=error_from_status(answer.rejected) if result == "rejected" else None,
                )
        except grpc.RpcError as err:
            if failures:
                raise failures[0] from None
            raise error_from_rpc_error(err) from None
        finally:
            call.cancel()

    def list_records(
        self,
        partnership: Optional[str] = None,
        kind: Union[int, str, None] = None,
        agency: Optional[str] = None,
        start_period: Optional[str] = None,
        end_period: Optional[str] = None,
        page_size: int = 1000,
    ) -> Iterator["pb.StoredRecord"]:
        """The stored records matching every filter given, in ``key`` order, all pages.

        ``kind`` is a ``pb.RecordKind`` or a name such as ``"workforce_return"``.
        """
        request = pb.ListRecordsRequest(
            partnership=partnership or "",
            kind=_enum_value(pb.RecordKind, kind if kind is not None else 0, "RECORD_KIND_"),
            agency=agency or "",
            start_period=start_period or "",
            end_period=end_period or "",
            page_size=page_size,
        )
        return self._pages(self._submission.ListRecords, request, "records")

    def record_revisions(self, key: str) -> Iterator["pb.RecordRevision"]:
        """The audit trail of one record (``StoredRecord.key``), oldest first."""
        request = pb.ListRecordRevisionsRequest(key=key, page_size=1000)
        return self._pages(self._submission.ListRecordRevisions, request, "revisions")

    # -- reports ---------------------------------------------------------------

    @staticmethod
    def _options(request: Any, min_respondents: Optional[int], weights: Optional[Mapping[str, float]]) -> Any:
        if min_respondents is not None:
            request.min_respondents = min_respondents
        if weights:
            request.weights.update({k: float(v) for k, v in weights.items()})
        return request

    def report(
        self,
        partnership: str,
        period: str,
        min_respondents: Optional[int] = None,
        weights: Optional[Mapping[str, float]] = None,
    ) -> "pb.PartnershipReport":
        """One partnership's report for one period (GetPartnershipReport).

        Args:
            partnership: Partnership id.
            period: ``YYYY``, ``YYYYQn``, ``YYYYMM`` or ``YYYYApril``.
            min_respondents: Fewest answers a survey indicator needs (default 5).
            weights: Domain weights by id ``D1`` to ``D7``; unnamed domains weigh 1.
        """
        request = pb.GetPartnershipReportRequest(partnership=partnership, period=period)
        return self._unary(self._reports.GetPartnershipReport, self._options(request, min_respondents, weights))

    def reports(
        self,
        partnership: str,
        start_period: str,
        end_period: str,
        min_respondents: Optional[int] = None,
        weights: Optional[Mapping[str, float]] = None,
    ) -> Iterator["pb.PartnershipReport"]:
        """One partnership's reports for a series of periods of one type, oldest first."""
        request = pb.ListPartnershipReportsRequest(
            partnership=partnership, start_period=start_period, end_period=end_period, page_size=100
        )
        request = self._options(request, min_respondents, weights)
        return self._pages(self._reports.ListPartnershipReports, request, "reports")

    def export(
        self,
        period: str,
        min_respondents: Optional[int] = None,
        weights: Optional[Mapping[str, float]] = None,
    ) -> Iterator["pb.PartnershipReport"]:
        """Every partnership's report for one period, in partnership id order,
        streamed as the server computes them (ExportReports)."""
        request = self._options(pb.ExportReportsRequest(period=period), min_respondents, weights)
        call = self._reports.ExportReports(request, metadata=self._metadata)
        return (message.report for message in self._stream(call))

    # -- registry --------------------------------------------------------------

    def create_agency(
        self, agency_id: str, display_name: str, sector: Union[int, str], request_id: Optional[str] = None
    ) -> "pb.Agency":
        """Registers an agency. ``sector`` is a ``pb.Sector`` or a name such as
        ``"nhs_body"``, ``"local_authority"``, ``"private_provider"``."""
        return self._unary(self._registry.CreateAgency, _agency_request(agency_id, display_name, sector, request_id))

    def get_agency(self, agency: str) -> "pb.Agency":
        """One agency, by id or ``agencies/{id}``."""
        return self._unary(self._registry.GetAgency, pb.GetAgencyRequest(name=_resource("agencies", agency)))

    def list_agencies(self) -> Iterator["pb.Agency"]:
        """Every agency, in id order."""
        return self._pages(self._registry.ListAgencies, pb.ListAgenciesRequest(page_size=1000), "agencies")

    def create_partnership(
        self, partnership_id: str, display_name: str, purpose: str = "", request_id: Optional[str] = None
    ) -> "pb.Partnership":
        """Registers a partnership."""
        request = _partnership_request(partnership_id, display_name, purpose, request_id)
        return self._unary(self._registry.CreatePartnership, request)

    def get_partnership(self, partnership: str) -> "pb.Partnership":
        """One partnership, by id or ``partnerships/{id}``."""
        request = pb.GetPartnershipRequest(name=_resource("partnerships", partnership))
        return self._unary(self._registry.GetPartnership, request)

    def list_partnerships(self) -> Iterator["pb.Partnership"]:
        """Every partnership, in id order."""
        request = pb.ListPartnershipsRequest(page_size=1000)
        return self._pages(self._registry.ListPartnerships, request, "partnerships")

    def create_membership(
        self,
        partnership: str,
        agency: str,
        role: Union[int, str],
        start_date: str,
        end_date: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> "pb.Membership":
        """Makes ``agency`` a member of ``partnership`` from ``start_date`` (``YYYY-MM-DD``).
        ``role`` is a ``pb.Role`` or ``"lead"`` / ``"member"``."""
        request = _membership_request(partnership, agency, role, start_date, end_date)
        request.request_id = request_id or ""
        return self._unary(self._registry.CreateMembership, request)

    def list_memberships(self, partnership: str) -> Iterator["pb.Membership"]:
        """The memberships of one partnership, current and ended, in agency id order."""
        request = pb.ListMembershipsRequest(parent=_resource("partnerships", partnership), page_size=1000)
        return self._pages(self._registry.ListMemberships, request, "memberships")

    def batch_create_agencies(
        self,
        agencies: Iterable[Union["pb.CreateAgencyRequest", Mapping[str, Any]]],
        request_id: Optional[str] = None,
        validate_only: bool = False,
    ) -> List["pb.Agency"]:
        """Registers 1 to 1,000 agencies in one transaction, all or none. Each entry is a
        ``pb.CreateAgencyRequest`` or a dict with ``agency_id``, ``display_name``, ``sector``."""
        entries = [e if isinstance(e, Message) else _agency_request(**e) for e in agencies]
        request = pb.BatchCreateAgenciesRequest(requests=entries, request_id=request_id or "",
                                                validate_only=validate_only)
        return list(self._unary(self._registry.BatchCreateAgencies, request).agencies)

    def batch_create_partnerships(
        self,
        partnerships: Iterable[Union["pb.CreatePartnershipRequest", Mapping[str, Any]]],
        request_id: Optional[str] = None,
        validate_only: bool = False,
    ) -> List["pb.Partnership"]:
        """Registers 1 to 1,000 partnerships at once, all or none. Each entry is a
        ``pb.CreatePartnershipRequest`` or a dict with ``partnership_id``,
        ``display_name`` and optionally ``purpose``."""
        entries = [e if isinstance(e, Message) else _partnership_request(**e) for e in partnerships]
        request = pb.BatchCreatePartnershipsRequest(requests=entries, request_id=request_id or "",
                                                    validate_only=validate_only)
        return list(self._unary(self._registry.BatchCreatePartnerships, request).partnerships)

    def batch_create_memberships(
        self,
        memberships: Iterable[Union["pb.CreateMembershipRequest", Mapping[str, Any]]],
        request_id: Optional[str] = None,
        validate_only: bool = False,
    ) -> List["pb.Membership"]:
        """Creates 1 to 1,000 memberships at once, of one partnership or several, all or
        none. Each entry is a ``pb.CreateMembershipRequest`` or a dict with
        ``partnership``, ``agency``, ``role``, ``start_date`` and optionally ``end_date``.
        The agencies and partnerships must exist already."""
        entries = [e if isinstance(e, Message) else _membership_request(**e) for e in memberships]
        request = pb.BatchCreateMembershipsRequest(parent="partnerships/-", requests=entries,
                                                   request_id=request_id or "", validate_only=validate_only)
        return list(self._unary(self._registry.BatchCreateMemberships, request).memberships)


def _agency_request(
    agency_id: str, display_name: str, sector: Union[int, str], request_id: Optional[str] = None
) -> "pb.CreateAgencyRequest":
    agency = pb.Agency(display_name=display_name, sector=_enum_value(pb.Sector, sector, "SECTOR_"))
    return pb.CreateAgencyRequest(agency_id=agency_id, agency=agency, request_id=request_id or "")


def _partnership_request(
    partnership_id: str, display_name: str, purpose: str = "", request_id: Optional[str] = None
) -> "pb.CreatePartnershipRequest":
    partnership = pb.Partnership(display_name=display_name, purpose=purpose)
    return pb.CreatePartnershipRequest(partnership_id=partnership_id, partnership=partnership,
                                       request_id=request_id or "")


def _membership_request(
    partnership: str, agency: str, role: Union[int, str], start_date: str, end_date: Optional[str] = None
) -> "pb.CreateMembershipRequest":
    membership = pb.Membership(agency=agency, role=_enum_value(pb.Role, role, "ROLE_"), start_date=start_date,
                               end_date=end_date or "")
    return pb.CreateMembershipRequest(parent=_resource("partnerships", partnership), membership=membership)
