#!/usr/bin/env python3
"""Validates Partnership Metrics' interoperability exports.

    validate_interop.py [--dhis2 FILE]... [--fhir FILE]...

--dhis2 FILE  a DHIS2 dataValueSet JSON import payload, checked against
              docs/schemas/dhis2-data-value-set.schema.json (JSON Schema 2020-12,
              with a FormatChecker) and for duplicate data values.
--fhir FILE   a FHIR R4 (R4B models) Bundle of MeasureReports, parsed with
              fhir.resources (structure, types, unknown fields) and checked against
              the rules of our export profile (see check_fhir_rules).

Exits 0 when every file is valid. Otherwise prints each problem on stdout as
`FILE: path: message` (path is JSONPath-like: `$`, `$.dataValues[0].period`)
and exits 1. Exits 2 on a usage error (argparse).

Needs the packages pinned in tests/e2e/requirements.txt (jsonschema, fhir.resources).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

ROOT = Path(__file__).resolve().parent.parent
DHIS2_SCHEMA = ROOT / "docs" / "schemas" / "dhis2-data-value-set.schema.json"

Problem = tuple[str, str]  # (path, message)


# --------------------------------------------------------------------------- JSON


class JsonError(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JsonError(f"duplicate property {key!r} in one object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not JSON")


def load_json(path: Path) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise JsonError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e


def json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


# --------------------------------------------------------------------------- DHIS2

_PERIOD_DAY = re.compile(r"^([0-9]{4})([0-9]{2})([0-9]{2})$")
_PERIOD_WEEK = re.compile(r"^([0-9]{4})(?:Wed|Thu|Sat|Sun)?W([0-9]+)$")


def _is_dhis2_period(value: object) -> bool:
    """Calendar checks the schema's patterns cannot make: a day period is a real
    date, week 53 exists only in ISO years that have one."""
    if not isinstance(value, str):
        return True
    m = _PERIOD_DAY.match(value)
    if m:
        try:
            dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return False
        return True
    m = _PERIOD_WEEK.match(value)
    if m and int(m[2]) == 53:
        return dt.date(int(m[1]), 12, 28).isocalendar()[1] == 53
    return True


def _is_dhis2_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        if "T" in value:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checks("x-dhis2-period")(_is_dhis2_period)
    checker.checks("x-dhis2-timestamp")(_is_dhis2_timestamp)
    return checker


def dhis2_validator(schema_path: Path = DHIS2_SCHEMA) -> Draft202012Validator:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=format_checker())


def _schema_message(error: jsonschema.ValidationError) -> str:
    # For the period's anyOf the default message dumps every branch; say what is meant.
    if error.validator == "anyOf" and error.schema.get("format") == "x-dhis2-period":
        return f"{error.instance!r} is not a DHIS2 period (yyyy, yyyyQn, yyyyMM, yyyyApril, yyyyMMdd, yyyyWn, ...)"
    if error.validator == "format" and error.validator_value == "x-dhis2-period":
        return f"{error.instance!r} is not a DHIS2 period (no such day or week)"
    if error.validator == "format" and error.validator_value == "x-dhis2-timestamp":
        return f"{error.instance!r} is not an ISO 8601 date or date-time"
    if error.validator == "pattern" and error.validator_value == "^[a-zA-Z][a-zA-Z0-9]{10}$":
        return f"{error.instance!r} is not a DHIS2 UID (11 characters: a letter, then 10 letters or digits)"
    return error.message


def validate_dhis2(doc: Any, validator: Draft202012Validator | None = None) -> list[Problem]:
    validator = validator or dhis2_validator()
    problems: list[Problem] = []
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for error in errors:
        problems.append((json_path(error.absolute_path), _schema_message(error)))

    # Duplicates: DHIS2 keys a data value by these five; a second one silently
    # overwrites the first on import. Period, orgUnit and attributeOptionCombo fall
    # back to the set's defaults as DHIS2 does; an omitted categoryOptionCombo
    # stands for the default combo.
    if isinstance(doc, dict) and isinstance(doc.get("dataValues"), list):
        seen: dict[tuple, int] = {}
        for i, dv in enumerate(doc["dataValues"]):
            if not isinstance(dv, dict):
                continue
            key = (
                dv.get("dataElement"),
                dv.get("period", doc.get("period")),
                dv.get("orgUnit", doc.get("orgUnit")),
                dv.get("categoryOptionCombo"),
                dv.get("attributeOptionCombo", doc.get("attributeOptionCombo")),
            )
            if not all(isinstance(k, (str, type(None))) for k in key):
                continue
            if key in seen:
                problems.append((
                    json_path(["dataValues", i]),
                    "duplicate data value: same (dataElement, period, orgUnit, categoryOptionCombo, "
                    f"attributeOptionCombo) = {key!r} as $.dataValues[{seen[key]}]",
                ))
            else:
                seen[key] = i
    return problems


# --------------------------------------------------------------------------- FHIR

# FHIR id datatype (http://hl7.org/fhir/R4B/datatypes.html#id).
_FHIR_ID = r"[A-Za-z0-9\-\.]{1,64}"
_REFERENCE = re.compile(rf"^([A-Za-z]+)/{_FHIR_ID}$")
# The targets FHIR R4 (4.0.1) and R4B (4.3.0) allow, from
# https://hl7.org/fhir/R4/measurereport-definitions.html#MeasureReport.subject and
# #MeasureReport.reporter. An Organization may be the reporter, never the subject
# (R5 added Organization as a subject; R4/R4B do not have it). fhir.resources does
# not check reference targets, so this does.
SUBJECT_TARGETS = ("Patient", "Practitioner", "PractitionerRole", "Location", "Device", "RelatedPerson", "Group")
REPORTER_TARGETS = ("Practitioner", "PractitionerRole", "Location", "Organization")
# Our profile: the subject is the partnership, and of the allowed targets only a
# Group can stand for it.
SUBJECT_TYPE = "Group"
# A canonical (http://hl7.org/fhir/R4B/datatypes.html#canonical): an absolute URL,
# optionally `|version`. We require http(s) and forbid whitespace and fragments.
_CANONICAL = re.compile(r"^https?://[^\s|#]+(\|[^\s|#]+)?$")
# date / dateTime (http://hl7.org/fhir/R4B/datatypes.html#dateTime).
_FHIR_DATETIME = re.compile(
    r"^(?P<y>[0-9]{4})(-(?P<m>0[1-9]|1[0-2])(-(?P<d>0[1-9]|[12][0-9]|3[01])"
    r"(T(?P<time>[01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
    r"(?P<tz>Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bounds(value: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The first and last instant a FHIR date/dateTime covers (UTC; a date without
    a zone is taken as UTC), or None if it is not one."""
    m = _FHIR_DATETIME.match(value)
    if not m:
        return None
    try:
        if m["time"] is not None:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
            return t, t
        y = int(m["y"])
        if m["d"] is not None:
            start = dt.datetime(y, int(m["m"]), int(m["d"]), tzinfo=dt.timezone.utc)
            end = start + dt.timedelta(days=1)
        elif m["m"] is not None:
            mo = int(m["m"])
            start = dt.datetime(y, mo, 1, tzinfo=dt.timezone.utc)
            end = dt.datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=dt.timezone.utc)
        else:
            start = dt.datetime(y, 1, 1, tzinfo=dt.timezone.utc)
            end = dt.datetime(y + 1, 1, 1, tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    return start, end - dt.timedelta(microseconds=1)


def _codings(cc: Any) -> list[tuple[str, str]]:
    if not isinstance(cc, dict) or not isinstance(cc.get("coding"), list):
        return []
    return [
        (c["system"], c["code"])
        for c in cc["coding"]
        if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
    ]


def _check_score(score: Any, path: list[Any]) -> Iterator[Problem]:
    if not isinstance(score, dict):
        yield json_path(path), "measureScore must be a Quantity object"
        return
    if "value" not in score:
        yield json_path(path), "measureScore without a value (leave measureScore out when there is no score)"
    elif not _is_number(score["value"]):
        yield json_path(path + ["value"]), f"measureScore.value must be a JSON number, not {score['value']!r}"


def check_measure_report(mr: Any, path: list[Any]) -> Iterator[Problem]:
    if not isinstance(mr, dict):
        yield json_path(path), "entry resource must be an object"
        return
    if mr.get("resourceType") != "MeasureReport":
        yield json_path(path + ["resourceType"]), f"must be 'MeasureReport', not {mr.get('resourceType')!r}"
        return
    if mr.get("status") != "complete":
        yield json_path(path + ["status"]), f"must be 'complete', not {mr.get('status')!r}"
    if mr.get("type") != "summary":
        yield json_path(path + ["type"]), f"must be 'summary', not {mr.get('type')!r}"
    measure = mr.get("measure")
    if not isinstance(measure, str) or not _CANONICAL.match(measure):
        yield json_path(path + ["measure"]), f"must be a canonical http(s) URL (optionally |version), not {measure!r}"

    subject = mr.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    m = _REFERENCE.match(ref) if isinstance(ref, str) else None
    if m and m[1] not in SUBJECT_TARGETS:
        yield (json_path(path + ["subject", "reference"]),
               f"{ref!r}: FHIR R4/R4B MeasureReport.subject cannot reference {m[1]} "
               f"(allowed: {', '.join(SUBJECT_TARGETS)}); the partnership is '{SUBJECT_TYPE}/<id>'")
    elif not m or m[1] != SUBJECT_TYPE:
        yield json_path(path + ["subject", "reference"]), f"must be '{SUBJECT_TYPE}/<id>' (the partnership), not {ref!r}"
    reporter = mr.get("reporter")
    if isinstance(reporter, dict) and isinstance(reporter.get("reference"), str):
        m = _REFERENCE.match(reporter["reference"])
        if not m or m[1] not in REPORTER_TARGETS:
            yield (json_path(path + ["reporter", "reference"]),
                   f"{reporter['reference']!r}: MeasureReport.reporter must reference one of {', '.join(REPORTER_TARGETS)}")

    period = mr.get("period")
    if not isinstance(period, dict):
        yield json_path(path + ["period"]), "period with start and end is required"
    else:
        bounds = {}
        for end in ("start", "end"):
            v = period.get(end)
            b = _bounds(v) if isinstance(v, str) else None
            if v is None:
                yield json_path(path + ["period", end]), f"period.{end} is required"
            elif b is None:
                yield json_path(path + ["period", end]), f"{v!r} is not a FHIR date or dateTime"
            else:
                bounds[end] = b
        if len(bounds) == 2 and bounds["start"][0] > bounds["end"][1]:
            yield json_path(path + ["period"]), f"period.start {period['start']!r} is after period.end {period['end']!r}"

    groups = mr.get("group")
    if not isinstance(groups, list) or not groups:
        yield json_path(path + ["group"]), "at least one group is required"
        return
    seen_codes: dict[tuple[str, str], int] = {}
    for gi, group in enumerate(groups):
        gpath = path + ["group", gi]
        if not isinstance(group, dict):
            continue
        codes = _codings(group.get("code"))
        if not codes:
            yield json_path(gpath + ["code"]), "group.code with at least one coding (system and code) is required"
        for c in codes:
            if c in seen_codes:
                yield json_path(gpath + ["code"]), f"group code {c[0]}|{c[1]} repeats $..group[{seen_codes[c]}]"
            else:
                seen_codes[c] = gi
        if "measureScore" in group:
            yield from _check_score(group["measureScore"], gpath + ["measureScore"])
        for si, strat in enumerate(group.get("stratifier") or []):
            if not isinstance(strat, dict):
                continue
            for ti, stratum in enumerate(strat.get("stratum") or []):
                if isinstance(stratum, dict) and ("value" in stratum) == ("component" in stratum):
                    yield (json_path(gpath + ["stratifier", si, "stratum", ti]),
                           "a stratum has either a value or components, not both nor neither (mrp-2)")
                if isinstance(stratum, dict) and "measureScore" in stratum:
                    yield from _check_score(
                        stratum["measureScore"], gpath + ["stratifier", si, "stratum", ti, "measureScore"]
                    )


def check_fhir_rules(doc: Any) -> list[Problem]:
    """Our export profile, on the JSON as written (fhir.resources coerces "62.5" to a
    decimal and does not check code bindings, so these look at the raw values)."""
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        return [("$", "must be a JSON object (a FHIR Bundle)")]
    if doc.get("resourceType") != "Bundle":
        return [("$.resourceType", f"must be 'Bundle', not {doc.get('resourceType')!r}")]
    if doc.get("type") != "collection":
        problems.append(("$.type", f"must be 'collection', not {doc.get('type')!r}"))
    if "total" in doc:
        problems.append(("$.total", "total is only for searchset and history bundles (bdl-1)"))
    entries = doc.get("entry")
    if not isinstance(entries, list) or not entries:
        problems.append(("$.entry", "at least one entry (a MeasureReport) is required"))
        return problems
    full_urls: dict[str, int] = {}
    report_keys: dict[tuple, int] = {}
    ids: dict[str, int] = {}
    for i, entry in enumerate(entries):
        epath: list[Any] = ["entry", i]
        if not isinstance(entry, dict):
            continue
        for key, rule in (("search", "bdl-2"), ("request", "bdl-3"), ("response", "bdl-4")):
            if key in entry:
                problems.append((json_path(epath + [key]), f"entry.{key} is not allowed in a collection bundle ({rule})"))
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if full_url.startswith("urn:uuid:"):
                try:
                    ok = str(uuid.UUID(full_url[9:])) == full_url[9:]
                except ValueError:
                    ok = False
                if not ok:
                    problems.append((json_path(epath + ["fullUrl"]),
                                     f"{full_url!r}: a urn:uuid must be a lowercase RFC 4122 UUID"))
            if "/_history/" in full_url:
                problems.append((json_path(epath + ["fullUrl"]), "fullUrl cannot be a version-specific reference (bdl-8)"))
            if full_url in full_urls:
                problems.append((json_path(epath + ["fullUrl"]), f"fullUrl repeats $.entry[{full_urls[full_url]}] (bdl-7)"))
            else:
                full_urls[full_url] = i
        if "resource" not in entry:
            problems.append((json_path(epath), "entry without a resource"))
            continue
        mr = entry["resource"]
        problems.extend(check_measure_report(mr, epath + ["resource"]))
        if isinstance(mr, dict) and mr.get("resourceType") == "MeasureReport":
            rid = mr.get("id")
            if isinstance(rid, str):
                if rid in ids:
                    problems.append((json_path(epath + ["resource", "id"]), f"id {rid!r} repeats $.entry[{ids[rid]}]"))
                else:
                    ids[rid] = i
            subj = mr.get("subject") if isinstance(mr.get("subject"), dict) else {}
            per = mr.get("period") if isinstance(mr.get("period"), dict) else {}
            key = (mr.get("measure"), subj.get("reference"), per.get("start"), per.get("end"))
            if all(isinstance(k, str) for k in key):
                if key in report_keys:
                    problems.append((json_path(epath + ["resource"]),
                                     f"a second report for the same measure, subject and period as $.entry[{report_keys[key]}]"))
                else:
                    report_keys[key] = i
    return problems


def check_fhir_structure(doc: Any) -> list[Problem]:
    """Parses with fhir.resources' R4B models: required elements, datatypes and
    their formats, choice types, and unknown properties (extra="forbid")."""
    from pydantic import ValidationError
    from fhir.resources.R4B.bundle import Bundle

    try:
        Bundle.model_validate(doc)
    except ValidationError as e:
        return [(json_path(err["loc"]), err["msg"]) for err in e.errors()]
    except Exception as e:  # fhir.resources raises a few errors outside pydantic's
        return [("$", f"{type(e).__name__}: {e}")]
    return []


def validate_fhir(doc: Any) -> list[Problem]:
    problems = check_fhir_rules(doc)
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        problems.extend(check_fhir_structure(doc))
    return problems


# --------------------------------------------------------------------------- CLI


def validate_file(kind: str, path: Path, dhis2: Draft202012Validator | None = None) -> list[Problem]:
    try:
        doc = load_json(path)
    except OSError as e:
        return [("$", f"cannot read: {e.strerror or e}")]
    except (JsonError, UnicodeDecodeError) as e:
        return [("$", str(e))]
    return validate_dhis2(doc, dhis2) if kind == "dhis2" else validate_fhir(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dhis2", action="append", default=[], metavar="FILE", type=Path,
                        help="a DHIS2 dataValueSet JSON file (repeatable)")
    parser.add_argument("--fhir", action="append", default=[], metavar="FILE", type=Path,
                        help="a FHIR R4 Bundle of MeasureReports, JSON (repeatable)")
    args = parser.parse_args(argv)
    if not args.dhis2 and not args.fhir:
        parser.error("give at least one --dhis2 FILE or --fhir FILE")

    dhis2 = dhis2_validator() if args.dhis2 else None
    failed = False
    for kind, files in (("dhis2", args.dhis2), ("fhir", args.fhir)):
        for path in files:
            for where, message in validate_file(kind, path, dhis2):
                failed = True
                print(f"{path}: {where}: {message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
