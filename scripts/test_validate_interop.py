#!/usr/bin/env python3
"""Self-test of validate_interop.py: the samples in scripts/testdata/interop/ pass,
and each mutation below fails with a problem at the expected path.

    python scripts/test_validate_interop.py      # exit 0 when every case behaves

Plain Python (no pytest); needs the packages of tests/e2e/requirements.txt.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import validate_interop as vi  # noqa: E402

DATA = HERE / "testdata" / "interop"
DHIS2_SAMPLES = [DATA / "dhis2-data-value-set.json", DATA / "dhis2-data-value-set-full.json"]
FHIR_SAMPLE = DATA / "fhir-bundle.json"

failures: list[str] = []
passed = 0


def check(name: str, ok: bool, detail: str = "") -> None:
    global passed
    if ok:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")


def load(p: Path) -> Any:
    return json.loads(p.read_text(encoding="utf-8"))


def mutated(doc: Any, fn: Callable[[Any], None]) -> Any:
    d = copy.deepcopy(doc)
    fn(d)
    return d


DV = lambda d: d["dataValues"][0]  # noqa: E731
MR = lambda d: d["entry"][0]["resource"]  # noqa: E731


def setitem(get: Callable[[Any], Any], key: str, value: Any) -> Callable[[Any], None]:
    return lambda d: get(d).__setitem__(key, value)


def delitem(get: Callable[[Any], Any], key: str) -> Callable[[Any], None]:
    return lambda d: get(d).pop(key)


# (name, mutation, a path that must be among the problems)
DHIS2_MUTATIONS: list[tuple[str, Callable[[Any], None], str]] = [
    ("uid too short", setitem(DV, "dataElement", "pmLeav1"), "$.dataValues[0].dataElement"),
    ("uid starting with a digit", setitem(DV, "orgUnit", "1uPartnerA1"), "$.dataValues[0].orgUnit"),
    ("uid with a dash", setitem(DV, "categoryOptionCombo", "HllvX50c-C0"), "$.dataValues[0].categoryOptionCombo"),
    ("period quarter 5", setitem(DV, "period", "2026Q5"), "$.dataValues[0].period"),
    ("period month 13", setitem(DV, "period", "202613"), "$.dataValues[0].period"),
    ("period ISO date form", setitem(DV, "period", "2026-07"), "$.dataValues[0].period"),
    ("period financial year lower case", setitem(DV, "period", "2026april"), "$.dataValues[0].period"),
    ("period day 31 February", setitem(DV, "period", "20260231"), "$.dataValues[0].period"),
    ("period relative", setitem(DV, "period", "LAST_QUARTER"), "$.dataValues[0].period"),
    ("missing dataElement", delitem(DV, "dataElement"), "$.dataValues[0]"),
    ("missing period", delitem(DV, "period"), "$.dataValues[0]"),
    ("missing orgUnit", delitem(DV, "orgUnit"), "$.dataValues[0]"),
    ("numeric value", setitem(DV, "value", 0.12), "$.dataValues[0].value"),
    ("followup as string", setitem(DV, "followup", "false"), "$.dataValues[0].followup"),
    ("unknown field in a data value (typo)", setitem(DV, "commment", "x"), "$.dataValues[0]"),
    ("unknown top-level field", lambda d: d.__setitem__("dataset", "pmPartnrSet"), "$"),
    ("completeDate not yyyy-MM-dd", lambda d: d.__setitem__("completeDate", "02/12/2026"), "$.completeDate"),
    ("completeDate not a day", lambda d: d.__setitem__("completeDate", "2026-02-30"), "$.completeDate"),
    ("lastUpdated not a timestamp", setitem(DV, "lastUpdated", "yesterday"), "$.dataValues[0].lastUpdated"),
    ("no dataValues", lambda d: d.pop("dataValues"), "$"),
    ("empty dataValues", lambda d: d.__setitem__("dataValues", []), "$.dataValues"),
    ("duplicate data value", lambda d: d["dataValues"].append(dict(d["dataValues"][0], value="0.13")), "$.dataValues[1]"),
]

FHIR_MUTATIONS: list[tuple[str, Callable[[Any], None], str]] = [
    ("Bundle type searchset", lambda d: d.__setitem__("type", "searchset"), "$.type"),
    ("not a Bundle", lambda d: d.__setitem__("resourceType", "Parameters"), "$.resourceType"),
    ("unknown field on the Bundle", lambda d: d.__setitem__("entries", []), "$.entries"),
    ("no entries", lambda d: d.__setitem__("entry", []), "$.entry"),
    ("entry resource not a MeasureReport", setitem(MR, "resourceType", "Observation"), "$.entry[0].resource.resourceType"),
    ("missing status", delitem(MR, "status"), "$.entry[0].resource.status"),
    ("status pending", setitem(MR, "status", "pending"), "$.entry[0].resource.status"),
    ("type individual", setitem(MR, "type", "individual"), "$.entry[0].resource.type"),
    ("measure not a canonical URL", setitem(MR, "measure", "partnership-sustainability"), "$.entry[0].resource.measure"),
    ("period start after end", setitem(MR, "period", {"start": "2026-10-01", "end": "2026-09-30"}), "$.entry[0].resource.period"),
    ("period without end", setitem(MR, "period", {"start": "2026-07-01"}), "$.entry[0].resource.period.end"),
    ("period start not a date", setitem(MR, "period", {"start": "2026-13-01", "end": "2026-09-30"}), "$.entry[0].resource.period.start"),
    # R4/R4B MeasureReport.subject does not allow Organization (R5 does): the brief's shape had it.
    ("subject an Organization", setitem(MR, "subject", {"reference": "Organization/pa"}), "$.entry[0].resource.subject.reference"),
    ("subject a Patient", setitem(MR, "subject", {"reference": "Patient/pa"}), "$.entry[0].resource.subject.reference"),
    ("subject id not a FHIR id", setitem(MR, "subject", {"reference": "Group/p a"}), "$.entry[0].resource.subject.reference"),
    ("reporter a Patient", setitem(MR, "reporter", {"reference": "Patient/x"}), "$.entry[0].resource.reporter.reference"),
    ("subject without reference", setitem(MR, "subject", {"display": "pa"}), "$.entry[0].resource.subject.reference"),
    ("no group", delitem(MR, "group"), "$.entry[0].resource.group"),
    ("group without code", lambda d: MR(d)["group"][0].pop("code"), "$.entry[0].resource.group[0].code"),
    ("repeated group code", lambda d: MR(d)["group"].append(copy.deepcopy(MR(d)["group"][0])), "$.entry[0].resource.group[2].code"),
    ("measureScore as string", lambda d: MR(d)["group"][0]["measureScore"].__setitem__("value", "62.5"),
     "$.entry[0].resource.group[0].measureScore.value"),
    ("measureScore without value", lambda d: MR(d)["group"][0].__setitem__("measureScore", {"unit": "%"}),
     "$.entry[0].resource.group[0].measureScore"),
    ("measureScore as boolean", lambda d: MR(d)["group"][0]["measureScore"].__setitem__("value", True),
     "$.entry[0].resource.group[0].measureScore.value"),
    ("stratum measureScore as string",
     lambda d: MR(d)["group"][1]["stratifier"][0]["stratum"][0]["measureScore"].__setitem__("value", "0.12"),
     "$.entry[0].resource.group[1].stratifier[0].stratum[0].measureScore.value"),
    ("unknown field on the MeasureReport", setitem(MR, "score", 62.5), "$.entry[0].resource.score"),
    ("unknown field in a group (typo)", lambda d: MR(d)["group"][0].__setitem__("measurScore", {"value": 1}),
     "$.entry[0].resource.group[0].measurScore"),
    ("stratifier code not a list (R4 has 0..*)",
     lambda d: MR(d)["group"][1]["stratifier"][0].__setitem__("code", {"text": "indicator"}),
     "$.entry[0].resource.group[1].stratifier[0].code"),
    ("extension without url", lambda d: MR(d)["group"][0]["extension"][0].pop("url"),
     "$.entry[0].resource.group[0].extension[0].url"),
    ("stratum with neither value nor components (mrp-2)",
     lambda d: MR(d)["group"][1]["stratifier"][0]["stratum"][1].pop("value"),
     "$.entry[0].resource.group[1].stratifier[0].stratum[1]"),
    ("total on a collection (bdl-1)", lambda d: d.__setitem__("total", 1), "$.total"),
    ("entry.request on a collection (bdl-3)", lambda d: d["entry"][0].__setitem__("request", {"method": "POST", "url": "MeasureReport"}),
     "$.entry[0].request"),
    ("fullUrl a placeholder uuid", lambda d: d["entry"][0].__setitem__("fullUrl", "urn:uuid:6f2c...-..."), "$.entry[0].fullUrl"),
    ("date without time zone", setitem(MR, "date", "2026-12-02T10:00:00"), "$.entry[0].resource.date"),
    ("second report for the same subject and period",
     lambda d: d["entry"].append(dict(copy.deepcopy(d["entry"][0]), fullUrl="urn:uuid:0b3c2a1e-5d4f-4e6a-9b8c-7d6e5f4a3b2c")),
     "$.entry[1].resource"),
]


def run_cases(kind: str, base: Any, cases: list[tuple[str, Callable[[Any], None], str]]) -> None:
    validate = vi.validate_dhis2 if kind == "dhis2" else vi.validate_fhir
    for name, fn, path in cases:
        problems = validate(mutated(base, fn))
        paths = [p for p, _ in problems]
        check(f"{kind}: {name}", path in paths,
              f"expected a problem at {path}, got {problems or 'none (accepted)'}")


def main() -> int:
    # Valid samples pass, and the FHIR sample really is the exporter's shape.
    for sample in DHIS2_SAMPLES:
        problems = vi.validate_file("dhis2", sample)
        check(f"valid {sample.name}", problems == [], repr(problems))
    problems = vi.validate_file("fhir", FHIR_SAMPLE)
    check(f"valid {FHIR_SAMPLE.name}", problems == [], repr(problems))

    # Every period form we produce, and every other documented one, is accepted.
    dhis2 = load(DHIS2_SAMPLES[0])
    for period in ["2026", "2026Q1", "2026Q4", "202601", "202612", "2026April", "2026July", "2026Oct",
                   "20260315", "2026W1", "2026W53", "2026WedW5", "2026BiW1", "202601B", "2026S2", "2026AprilS1"]:
        problems = vi.validate_dhis2(mutated(dhis2, setitem(DV, "period", period)))
        check(f"dhis2: period {period} accepted", problems == [], repr(problems))
    # 2027 has 52 ISO weeks.
    problems = vi.validate_dhis2(mutated(dhis2, setitem(DV, "period", "2027W53")))
    check("dhis2: period 2027W53 rejected", bool(problems), "accepted")
    # The same data element and period for another org unit is not a duplicate.
    problems = vi.validate_dhis2(mutated(dhis2, lambda d: d["dataValues"].append(dict(DV(d), orgUnit="OuPartnerB1"))))
    check("dhis2: same element and period, other org unit, accepted", problems == [], repr(problems))

    run_cases("dhis2", dhis2, DHIS2_MUTATIONS)

    # A domain with no score is a group without measureScore; an Organization may be the reporter.
    fhir = load(FHIR_SAMPLE)
    no_score = {"code": {"coding": [{"system": "https://partnership-metrics.example/fhir/CodeSystem/score", "code": "D2"}]}}
    problems = vi.validate_fhir(mutated(fhir, lambda d: MR(d)["group"].append(no_score)))
    check("fhir: group without measureScore accepted", problems == [], repr(problems))
    problems = vi.validate_fhir(mutated(fhir, setitem(MR, "reporter", {"reference": "Organization/pm"})))
    check("fhir: Organization reporter accepted", problems == [], repr(problems))
    run_cases("fhir", load(FHIR_SAMPLE), FHIR_MUTATIONS)

    # fhir.resources itself rejects unknown fields (extra="forbid"), not only our rules.
    fhir = load(FHIR_SAMPLE)
    structural = vi.check_fhir_structure(mutated(fhir, setitem(MR, "score", 1)))
    check("fhir.resources rejects an unknown field", any(p == "$.entry[0].resource.score" for p, _ in structural),
          repr(structural))

    # The command line: exit codes and the FILE: path: message lines.
    with tempfile.TemporaryDirectory() as tmp:
        bad_dhis2 = Path(tmp) / "bad-dhis2.json"
        bad_dhis2.write_text(json.dumps(mutated(dhis2, setitem(DV, "value", 0.12))))
        bad_fhir = Path(tmp) / "bad-fhir.json"
        bad_fhir.write_text(json.dumps(mutated(fhir, lambda d: d.__setitem__("type", "searchset"))))
        dup_key = Path(tmp) / "dup-key.json"
        dup_key.write_text('{"dataValues": [], "dataValues": []}')
        script = [sys.executable, str(HERE / "validate_interop.py")]

        ok = subprocess.run(script + ["--dhis2", str(DHIS2_SAMPLES[0]), "--dhis2", str(DHIS2_SAMPLES[1]),
                                      "--fhir", str(FHIR_SAMPLE)], capture_output=True, text=True)
        check("cli: valid files exit 0 silently", ok.returncode == 0 and ok.stdout == "", f"{ok.returncode} {ok.stdout}{ok.stderr}")

        bad = subprocess.run(script + ["--dhis2", str(bad_dhis2), "--fhir", str(bad_fhir), "--dhis2", str(dup_key),
                                       "--fhir", str(Path(tmp) / "missing.json")], capture_output=True, text=True)
        lines = bad.stdout.splitlines()
        check("cli: invalid files exit 1", bad.returncode == 1, f"{bad.returncode} {bad.stderr}")
        check("cli: DHIS2 problem line", f"{bad_dhis2}: $.dataValues[0].value: 0.12 is not of type 'string'" in lines, repr(lines))
        check("cli: FHIR problem line", f"{bad_fhir}: $.type: must be 'collection', not 'searchset'" in lines, repr(lines))
        check("cli: duplicate JSON key", any(l.startswith(f"{dup_key}: $: duplicate property 'dataValues'") for l in lines), repr(lines))
        check("cli: missing file", any(l.startswith(f"{Path(tmp) / 'missing.json'}: $: cannot read") for l in lines), repr(lines))
        check("cli: every line is FILE: path: message",
              all(l.split(": ", 2)[1].startswith("$") for l in lines), repr(lines))

        usage = subprocess.run(script, capture_output=True, text=True)
        check("cli: no files is a usage error (exit 2)", usage.returncode == 2, f"{usage.returncode}")

    for f in failures:
        print(f"FAIL {f}")
    print(f"test_validate_interop: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
