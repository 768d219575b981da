"""The service's protobuf messages and enums, in one namespace.

Everything `partnership.v1` defines (generated from proto/ when the package was
built) is here: ``pb.Record``, ``pb.WorkforceReturn``, ``pb.PartnershipReport``,
``pb.Sector``, ``pb.SECTOR_NHS_BODY`` and so on. The generated modules themselves are
``pb.records_pb2``, ``pb.registry_pb2``, ``pb.submission_pb2``, ``pb.reports_pb2`` and
the stubs ``pb.*_pb2_grpc``.
"""

from ._pb.partnership.v1 import (  # noqa: F401
    records_pb2,
    registry_pb2,
    registry_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)
from ._pb.partnership.v1.records_pb2 import *  # noqa: F401,F403
from ._pb.partnership.v1.registry_pb2 import *  # noqa: F401,F403
from ._pb.partnership.v1.reports_pb2 import *  # noqa: F401,F403
from ._pb.partnership.v1.submission_pb2 import *  # noqa: F401,F403

del DESCRIPTOR  # noqa: F821 - each module's file descriptor; the last one would win
