"""Reports as rows: a long table a data team can filter, pivot and plot.

One row per partnership, period and item, where an item is one of the 22 indicators
(``item_type`` ``indicator``), one of the seven domains (``domain``) or the
Partnership Sustainability Index (``index``, item ``psi``):

=====================  ==========================================================
column                 meaning
=====================  ==========================================================
partnership            partnership id
period                 period id, e.g. ``2026Q3``
methodology_version    methodology version the numbers follow, e.g. ``"1"``
item_type              ``indicator``, ``domain`` or ``index``
item                   indicator id (``leaver_rate_annualised``), domain id (``D1``)
                       or ``psi``
domain                 the domain id of an indicator or domain; empty for the index
value                  indicator value, or the PSI (1 to 100); empty for a domain
                       and when missing
score                  indicator or domain score in [0, 1]; empty for the index,
                       for a reported (unscored) indicator and when missing
missing_reason         why the number is missing (``NO_DATA``,
                       ``SUPPRESSED_SMALL_NUMBER``, ``NO_MEMBERS``,
                       ``INSUFFICIENT_DATA``); empty when present
records_used           records an indicator's value used; empty otherwise
band                   the PSI's band (``GREEN``, ``AMBER``, ``RED``); empty otherwise
weight                 a domain's weight, or the index's total weight W
=====================  ==========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Union

from . import pb

if TYPE_CHECKING:  # pragma: no cover
    import pandas

__all__ = ["COLUMNS", "report_rows", "to_dataframe"]

#: The columns of :func:`to_dataframe`, in order.
COLUMNS = [
    "partnership",
    "period",
    "methodology_version",
    "item_type",
    "item",
    "domain",
    "value",
    "score",
    "missing_reason",
    "records_used",
    "band",
    "weight",
]

Reports = Union["pb.PartnershipReport", Iterable["pb.PartnershipReport"]]


def _missing(reason: int) -> Optional[str]:
    if reason == pb.MISSING_REASON_UNSPECIFIED:
        return None
    return pb.MissingReason.Name(reason).removeprefix("MISSING_REASON_")


def _band(band: int) -> Optional[str]:
    if band == pb.BAND_UNSPECIFIED:
        return None
    return pb.Band.Name(band).removeprefix("BAND_")


def _optional(message: Any, field: str) -> Optional[float]:
    return getattr(message, field) if message.HasField(field) else None


def report_rows(reports: Reports) -> List[Dict[str, Any]]:
    """The rows of :func:`to_dataframe` as dicts (no pandas needed); None for empty."""
    if isinstance(reports, pb.PartnershipReport):
        reports = [reports]
    rows: List[Dict[str, Any]] = []
    for report in reports:
        base = {
            "partnership": report.partnership,
            "period": report.period.id,
            "methodology_version": report.methodology_version,
        }
        for i in report.indicators:
            rows.append({**base, "item_type": "indicator", "item": i.id, "domain": i.domain,
                         "value": _optional(i, "value"), "score": _optional(i, "score"),
                         "missing_reason": _missing(i.missing_reason), "records_used": i.records_used,
                         "band": None, "weight": None})
        for d in report.domains:
            rows.append({**base, "item_type": "domain", "item": d.domain, "domain": d.domain, "value": None,
                         "score": _optional(d, "score"), "missing_reason": _missing(d.missing_reason),
                         "records_used": None, "band": None, "weight": d.weight})
        c = report.composite
        rows.append({**base, "item_type": "index", "item": "psi", "domain": None, "value": _optional(c, "psi"),
                     "score": None, "missing_reason": _missing(c.missing_reason), "records_used": None,
                     "band": _band(c.band), "weight": _optional(c, "total_weight")})
    return rows


def to_dataframe(reports: Reports) -> "pandas.DataFrame":
    """Reports (one, or any iterable such as ``client.export(period)``) as a long
    pandas DataFrame with the columns :data:`COLUMNS` (see the module's docstring).

    Needs pandas: ``pip install 'partnership-metrics[pandas]'``.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            "partnership_metrics.to_dataframe needs pandas, which is not installed: "
            "pip install 'partnership-metrics[pandas]' (or pip install pandas)"
        ) from exc
    rows = report_rows(reports)
    columns: Dict[str, Any] = {name: [row[name] for row in rows] for name in COLUMNS}
    for name in ("value", "score", "weight"):
        columns[name] = pd.array([float("nan") if v is None else v for v in columns[name]], dtype="float64")
    columns["records_used"] = pd.array(columns["records_used"], dtype="Int64")
    return pd.DataFrame(columns, columns=COLUMNS)
