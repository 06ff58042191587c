"""OSCAL assessment results (one observation per test, one finding per control) and the
small assessment plan they import."""

from __future__ import annotations

import re
import uuid
from typing import Any

from evidence.catalog import Catalog
from evidence.results import TestResult, control_status

OSCAL_VERSION = "1.0.4"  # the version of the official schema kept in schemas/oscal/
NS = "https://ztm.example/ns/oscal"
AP_FILE = "assessment-plan.json"
METHOD = {"passed": "TEST", "failed": "TEST", "error": "TEST", "waived": "TEST", "skipped": "TEST"}


def nist_control_id(text: str) -> str | None:
    """'SC-8(1)' -> 'sc-8.1', the id form of the OSCAL SP 800-53 catalog."""
    match = re.fullmatch(r"([A-Z]{2})-(\d+)(?:\((\d+)\))?", text.split(" ")[0])
    if not match:
        return None
    family, number, enhancement = match.groups()
    return f"{family.lower()}-{number}" + (f".{enhancement}" if enhancement else "")


def _metadata(title: str, when: str, version: str) -> dict[str, Any]:
    return {"title": title, "last-modified": when, "version": version, "oscal-version": OSCAL_VERSION}


def _reviewed_controls(catalog: Catalog, controls: list[str]) -> dict[str, Any]:
    ids = sorted({nid for c in controls if (ctl := catalog.get(c))
                  for m in ctl.mappings.get("nist", []) if (nid := nist_control_id(m))})
    selection: dict[str, Any] = {"include-controls": [{"control-id": i} for i in ids]} if ids else {"include-all": {}}
    return {"control-selections": [selection]}


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value}


def assessment_plan(catalog: Catalog, controls: list[str], *, target_name: str, when: str,
                    version: str) -> dict[str, Any]:
    return {"assessment-plan": {
        "uuid": str(uuid.uuid4()),
        "metadata": _metadata(f"Zero-Trust MySQL control suite against {target_name}", when, version),
        "import-ssp": {"href": f"urn:ztm:target:{target_name}",
                       "remarks": "The target file of the run (see run.json) stands in for a system security plan."},
        "reviewed-controls": _reviewed_controls(catalog, controls),
    }}


def assessment_results(catalog: Catalog, results: list[TestResult], *, target_name: str, started: str,
                       finished: str, version: str) -> dict[str, Any]:
    observations, findings = [], []
    by_control: dict[str, list[tuple[TestResult, str]]] = {}
    for result in results:
        obs_uuid = str(uuid.uuid4())
        observation: dict[str, Any] = {
            "uuid": obs_uuid,
            "title": result.name,
            "description": f"pytest {result.nodeid}: {result.outcome}",
            "props": [_prop("outcome", result.outcome), *(_prop("control-id", c) for c in result.controls)],
            "methods": [METHOD[result.outcome]],
            "collected": finished,
        }
        refs = result.to_json({})["evidence"]
        if refs:
            observation["relevant-evidence"] = [{"href": f"../{ref}", "description": f"observed data: {ref}"}
                                                for ref in refs]
        if result.message:
            observation["remarks"] = result.message
        observations.append(observation)
        for control in result.controls:
            by_control.setdefault(control, []).append((result, obs_uuid))
    for control, entries in sorted(by_control.items()):
        status = control_status([r for r, _ in entries])
        ctl = catalog.get(control)
        finding: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "title": f"{control}: {ctl.title if ctl else control}",
            "description": ctl.rationale if ctl else control,
            "props": [_prop("control-id", control), _prop("status", status),
                      *(_prop(f"{fw}-mapping", m) for fw, ms in (ctl.mappings.items() if ctl else [])
                        for m in ms)],
            "target": {"type": "objective-id", "target-id": control.lower(),
                       "status": {"state": "satisfied" if status == "passed" else "not-satisfied"}},
            "related-observations": [{"observation-uuid": u} for _, u in entries],
        }
        waived = [r.waiver for r, _ in entries if r.waiver]
        if waived:
            finding["remarks"] = "Waived: " + "; ".join(sorted(set(waived)))
        elif status == "skipped":
            finding["remarks"] = "Every test of this control was skipped: not assessed."
        findings.append(finding)
    result_block: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "title": f"Control suite run against {target_name}",
        "description": "Each observation is one pytest test of a control; each finding one control of the "
                       "catalog, satisfied only if all its tests passed.",
        "start": started,
        "end": finished,
        "reviewed-controls": _reviewed_controls(catalog, sorted(by_control)),
    }
    if observations:
        result_block["observations"] = observations
    if findings:
        result_block["findings"] = findings
    return {"assessment-results": {
        "uuid": str(uuid.uuid4()),
        "metadata": _metadata(f"Zero-Trust MySQL assessment results: {target_name}", finished, version),
        "import-ap": {"href": AP_FILE},
        "results": [result_block],
    }}
