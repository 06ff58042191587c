"""OSCAL 1.1.2 assessment results (one observation per test, one finding per control) and
the small assessment plan they import. A fleet run has one result per target, each with its
own observations and findings (and a ``target`` property naming it).

Every catalog control has a finding. It is ``satisfied`` only if every observation of its
control passed (tests that do not apply to the target's engine or version are no objective
of it: outcome ``not-applicable``); a failure, an error, a waived failure or a skipped test makes it
``not-satisfied`` (with the reason in its remarks), and so does a control no test of the run
assessed ("not assessed" in its remarks and its ``assessment`` property). The suite itself
is the assessment tool: a component in the result's local definitions that every
observation names as its origin.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

from evidence.catalog import Catalog
from evidence.results import TestResult

OSCAL_VERSION = "1.1.2"  # the version of the official schema kept in schemas/oscal/
NS = "https://ztm.example/ns/oscal"
AP_FILE = "assessment-plan.json"


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
    return {"description": "NIST SP 800-53 Rev. 5 controls mapped from the catalog controls that were tested.",
            "control-selections": [selection]}


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value}


def _one_line(text: str) -> str:
    """OSCAL property values are single-line, trimmed strings."""
    return " ".join(text.split()) or "-"


def assessment_plan(catalog: Catalog, controls: list[str], *, target_name: str, when: str,
                    version: str, policy: Any = None, policies: dict[str, Any] | None = None) -> dict[str, Any]:
    """``policy``: the one target's policy; ``policies``: each target's by name (one part each in a fleet)."""
    plan: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "metadata": _metadata(f"Zero-Trust MySQL control suite against {target_name}", when, version),
        "import-ssp": {"href": f"urn:ztm:target:{quote(target_name, safe='')}",
                       "remarks": "The target file of the run (see run.json) stands in for a system security plan."},
    }
    named = policies if policies is not None else ({target_name: policy} if policy is not None else {})
    if named:
        fleet = len(named) > 1
        parts = [_policy_part(p, name if fleet else None) for name, p in named.items()]
        plan["terms-and-conditions"] = {"parts": parts}
    plan["reviewed-controls"] = _reviewed_controls(catalog, controls)
    return {"assessment-plan": plan}


def _policy_part(policy: Any, target: str | None = None) -> dict[str, Any]:
    """The policy in force as the plan's methodology: one 'set-parameter' part per value
    (param-id, values, source). OSCAL 1.1.2 assessment plans have no set-parameters of their
    own (SSPs and component definitions do), so the values travel as parts with this shape."""
    tailored = f"; overridden by the target: {', '.join(policy.overridden)}" if policy.overridden else ""
    on = f" on {target}" if target else ""
    return {
        "name": "methodology", "title": f"Policy in force{on}: {policy.name}",
        "props": [_prop("policy-profile", policy.name), _prop("policy-sha256", policy.digest),
                  *([_prop("target", _one_line(target))] if target else [])],
        "prose": (f"Every control judged the target{on} against the {policy.name} policy profile ({policy.title})"
                  f"{tailored}. The resolved policy is policy.json in this bundle; run.json records its SHA-256."),
        "parts": [{"name": "set-parameter", "ns": NS, "title": key,
                   "props": [_prop("param-id", key), *(_prop("value", _one_line(str(v)) or "(empty)")
                                                       for v in (value if isinstance(value, list) else [value]))],
                   "prose": f"Source: {policy.source.get(key) or 'not cited'}"}
                  for key, value in policy.parameters().items()],
    }


# Outcomes in which a test reached a verdict on its control; skipped and errored tests assessed nothing.
ASSESSED = frozenset({"passed", "failed", "waived"})
NOT_ASSESSED = ("Not assessed: no test of this control ran in this run (not selected, not collected, or the "
                "control has no test yet).")


def finding_state(results: list[TestResult]) -> tuple[str, str, str | None]:
    """(state, reason, remarks) of a control's finding from its tests' outcomes."""
    if not results:
        return "not-satisfied", "other", NOT_ASSESSED
    applicable = [r for r in results if r.outcome != "not-applicable"]
    if not applicable:  # never satisfied on nothing seen
        return "not-satisfied", "other", ("Not applicable to this target: " + "; ".join(
            f"{r.name}: {_one_line(r.message)[:200]}" for r in results))
    results = applicable  # a test that does not apply to the target is no objective of this control
    outcomes = [r.outcome for r in results]
    if outcomes and all(o == "passed" for o in outcomes):
        return "satisfied", "pass", None
    failed = [r for r in results if r.outcome in ("failed", "error")]
    waived = [r for r in results if r.outcome == "waived"]
    skipped = [r for r in results if r.outcome == "skipped"]
    notes = []
    if failed:
        notes.append("Failed: " + "; ".join(f"{r.name}: {_one_line(r.message)[:300]}" for r in failed))
    if waived:
        notes.append("Waived: " + "; ".join(sorted({r.waiver or "" for r in waived})))
    if skipped:
        notes.append("Not assessed (skipped): " + "; ".join(f"{r.name}: {_one_line(r.message)[:200]}"
                                                            for r in skipped))
    return "not-satisfied", "fail" if failed or waived else "other", " ".join(notes)


def assessment_results(catalog: Catalog, results: list[TestResult] | dict[str, list[TestResult]], *,
                       target_name: str, started: str, finished: str, version: str,
                       tools: dict[str, str]) -> dict[str, Any]:
    """``results``: the tests of the one target, or each target's tests by name (a fleet: one
    OSCAL result per target)."""
    groups = results if isinstance(results, dict) else {target_name: results}
    fleet = len(groups) > 1
    blocks = [_result_block(catalog, group, name, fleet=fleet, started=started, finished=finished, tools=tools)
              for name, group in groups.items()]
    return {"assessment-results": {
        "uuid": str(uuid.uuid4()),
        "metadata": _metadata(f"Zero-Trust MySQL assessment results: {target_name}", finished, version),
        "import-ap": {"href": AP_FILE},
        "results": blocks,
    }}


def _result_block(catalog: Catalog, results: list[TestResult], target_name: str, *, fleet: bool, started: str,
                  finished: str, tools: dict[str, str]) -> dict[str, Any]:
    tool_uuid = str(uuid.uuid4())
    observations, findings = [], []
    by_control: dict[str, list[tuple[TestResult, str]]] = {}
    for result in results:
        obs_uuid = str(uuid.uuid4())
        observation: dict[str, Any] = {
            "uuid": obs_uuid,
            "title": result.name,
            "description": f"pytest {result.nodeid}: {result.outcome}",
            "props": [_prop("outcome", result.outcome), _prop("pytest-nodeid", _one_line(result.nodeid)),
                      *(_prop("control-id", c) for c in result.controls)],
            "methods": ["TEST"],
            "types": ["control-objective"],
            "origins": [{"actors": [{"type": "tool", "actor-uuid": tool_uuid}]}],
            "collected": finished,
        }
        if result.evidence_files:
            observation["relevant-evidence"] = [{"href": f"../{ref}", "description": f"Observed data: {ref}"}
                                                for ref in result.evidence_files]
        if result.message:
            observation["remarks"] = result.message
        observations.append(observation)
        for control in result.controls:
            by_control.setdefault(control, []).append((result, obs_uuid))
    # Every catalog control gets a finding: one without tests in this run is "not assessed", never satisfied.
    for control in [*catalog.controls, *sorted(set(by_control) - set(catalog.controls))]:
        ctl, entries = catalog.get(control), by_control.get(control, [])
        state, reason, remarks = finding_state([r for r, _ in entries])
        finding: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "title": f"{control}: {ctl.title if ctl else control}",
            "description": ctl.rationale if ctl else control,
            "props": [_prop("control-id", control),
                      *(_prop(k, v) for k, v in (ctl.severity_json().items() if ctl else [])),
                      *(_prop(f"{fw}-mapping", m) for fw, ms in (ctl.mappings.items() if ctl else []) for m in ms),
                      _prop("assessment", "assessed" if any(r.outcome in ASSESSED for r, _ in entries)
                            else "not-assessed")],
            "origins": [{"actors": [{"type": "tool", "actor-uuid": tool_uuid}]}],
            "target": {"type": "objective-id", "target-id": control.lower(),
                       "status": {"state": state, "reason": reason}},
        }
        if entries:
            finding["related-observations"] = [{"observation-uuid": u} for _, u in entries]
        if remarks:
            finding["remarks"] = remarks
            finding["target"]["status"]["remarks"] = remarks
        findings.append(finding)
    block: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "title": f"Control suite run against {target_name}",
        "description": "Each observation is one pytest test of a control; each finding one control of the "
                       "catalog, satisfied only if all its tests passed."
                       + (f" This result covers the target {target_name} of a fleet." if fleet else ""),
        **({"props": [_prop("target", _one_line(target_name))]} if fleet else {}),
        "start": started,
        "end": finished,
        "local-definitions": {"components": [_tool_component(tool_uuid, tools)]},
        "reviewed-controls": _reviewed_controls(catalog, list(catalog.controls)),
    }
    if observations:
        block["observations"] = observations
    if findings:
        block["findings"] = findings
    return block


def _tool_component(tool_uuid: str, tools: dict[str, str]) -> dict[str, Any]:
    return {
        "uuid": tool_uuid,
        "type": "software",
        "title": "Zero-Trust MySQL control suite (pytest)",
        "description": "The pytest control suite that made every observation; versions of its tools are props "
                       "and in run.json.",
        "props": [_prop("tool-version", _one_line(f"{name} {value}")) for name, value in sorted(tools.items())]
        or [_prop("tool-version", "unknown")],
        "status": {"state": "operational"},
    }
