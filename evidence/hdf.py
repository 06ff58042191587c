"""The run as Heimdall Data Format (``hdf.json``): InSpec's ``inspec exec --reporter json``
document, which MITRE Heimdall and the SAF CLI read.

One profile (the catalog), one HDF control per catalog control, one result per test of it:

- ``impact`` from the catalog severity as InSpec profiles set it (high 0.7, medium 0.5, low 0.3);
  a control whose tests all found it not applicable gets impact 0.0, as InSpec does, so Heimdall
  shows it *Not Applicable*.
- result ``status``: passed, failed, error, skipped. A waived failure stays ``failed`` (the test
  failed); the waiver is the control's ``waiver_data`` with ``run: true``, which is InSpec's way of
  saying "ran and reported, its failures do not fail the run" (``--fail-on`` treats it the same).
  Not-applicable tests are ``skipped`` with their reason.
- a control that no test of the run assessed gets one ``skipped`` result that says so (Heimdall:
  *Not Reviewed*); an HDF control without results would read as a profile error.
- HDF has no "partly assessed": Heimdall and the SAF CLI call a control *Passed* as soon as one
  result passed and none failed. A control this suite finds *not assessed* because some of its
  tests were skipped is never satisfied, so its passing tests are written ``skipped`` with a
  message that says they passed and why they do not count (Heimdall: *Not Reviewed*).
- ``tags``: ``nist`` (800-53 ids), ``stig`` as catalogued, ``gid``/``rid``/``stig_id`` split from
  it (V-, SV- and MYS8 ids), ``cis``, ``severity``, ``stig_category``, ``family`` and the suite's
  own ``verdict``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from evidence.catalog import Catalog, Control
from evidence.results import TestResult
from evidence.summary import NOT_APPLICABLE, NOT_ASSESSED, ControlVerdict
from evidence.waivers import Waiver

HDF_NAME = "hdf.json"
PROFILE_NAME = "zero-trust-mysql"
IMPACT = {"high": 0.7, "medium": 0.5, "low": 0.3}  # InSpec's convention (and the SAF CLI's reading of it)
STATUS = {"passed": "passed", "failed": "failed", "error": "error", "waived": "failed",
          "skipped": "skipped", "not-applicable": "skipped", "not_applicable": "skipped"}
NOT_ASSESSED_MESSAGE = ("Not assessed: no test of this control ran in this run (not selected, not collected, or the "
                "control has no test yet).")


def iso8601(moment: float | datetime | None) -> str:
    """InSpec writes result start times as ISO 8601 with the offset (UTC here)."""
    if moment is None:
        moment = datetime.now(UTC)
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _stig_tags(entries: list[str]) -> dict[str, list[str]]:
    """'SV-235187 MYS8-00-011500' -> rid SV-235187, gid V-235187 (its vulnerability id), stig_id MYS8-00-011500."""
    rid, stig_id = [], []
    for entry in entries:
        for part in entry.split():
            (rid if part.startswith("SV-") else stig_id).append(part)
    return {"gid": [r[1:] for r in rid], "rid": rid, "stig_id": stig_id}


def _tags(control: Control, verdict: ControlVerdict) -> dict[str, Any]:
    tags: dict[str, Any] = {"nist": control.mappings.get("nist", []), "stig": control.mappings.get("stig", []),
                            **_stig_tags(control.mappings.get("stig", [])), "cis": control.mappings.get("cis", []),
                            "severity": control.severity, "family": control.family, "verdict": verdict.verdict}
    if control.stig_category:
        tags["stig_category"] = control.stig_category
    return tags


def _result(test: TestResult, fallback_start: str) -> dict[str, Any]:
    status = STATUS.get(test.outcome, "error")
    out: dict[str, Any] = {"status": status, "code_desc": test.nodeid, "run_time": round(test.duration, 6),
                           "start_time": iso8601(test.started) if test.started else fallback_start}
    if status == "skipped":
        out["skip_message"] = test.message or "skipped"
    elif status != "passed":
        out["message"] = test.message or test.outcome
    return out


def _waiver_data(control_id: str, tests: list[TestResult], waivers: list[Waiver], today: Any) -> dict[str, Any] | None:
    """InSpec's waiver_data: the waiver that covered a failure of this control, else its first active one,
    else an expired one ("evaluating control normally", as InSpec says of an expired waiver)."""
    mine = [w for w in waivers if w.control == control_id]
    active = [w for w in mine if not w.expired(today)]
    used = {t.waiver for t in tests if t.waiver}
    chosen = next((w for w in active if f"{w.control} waived: {w.describe()}" in used), active[0] if active else None)
    if chosen is not None:
        return {"justification": _justification(chosen), "run": True, "skipped_due_to_waiver": False,
                "expiration_date": chosen.expires.isoformat(), "message": ""}
    if mine:
        w = mine[0]
        return {"justification": _justification(w), "run": True, "skipped_due_to_waiver": False,
                "expiration_date": w.expires.isoformat(),
                "message": f"Waiver expired on {w.expires.isoformat()}, evaluating control normally"}
    return None


def _justification(waiver: Waiver) -> str:
    scope = waiver.scope()
    return f"{waiver.justification} (approved by {waiver.approver}" + (f"; covers {scope})" if scope else ")")


def _control(control: Control, verdict: ControlVerdict, tests: list[TestResult], waivers: list[Waiver],
             run_start: str, today: Any, evidence_refs: bool) -> dict[str, Any]:
    results = [_result(t, run_start) for t in tests]
    if verdict.verdict == NOT_ASSESSED:  # a pass must not make Heimdall call the control Passed
        for result in results:
            if result["status"] == "passed":
                result["status"] = "skipped"
                result["skip_message"] = (f"passed, but does not count: {control.id} is not assessed as a whole "
                                          f"({verdict.reason})")
    if not results:
        results = [{"status": "skipped", "code_desc": f"{control.id}: no test ran", "run_time": 0.0,
                    "start_time": run_start, "skip_message": NOT_ASSESSED_MESSAGE}]
    modules = sorted({t.nodeid.split("::")[0] for t in tests})
    first = tests[0] if tests else None
    descriptions = [{"label": "default", "data": control.rationale}, {"label": "rationale", "data": control.rationale}]
    if tests:
        descriptions.append({"label": "check", "data": "Checked by the suite's tests: " +
                             ", ".join(t.nodeid for t in tests)})
    doc: dict[str, Any] = {
        "id": control.id,
        "title": control.title,
        "desc": control.rationale,
        "descriptions": descriptions,
        "impact": 0.0 if verdict.verdict == NOT_APPLICABLE else IMPACT[control.severity],
        "refs": [{"ref": f"evidence file {path}", "uri": path} for t in tests for path in t.evidence_files]
        if evidence_refs else [],
        "tags": _tags(control, verdict),
        "code": "\n".join([f"# pytest controls --control {control.id}", *(f"# {m}" for m in modules)]),
        "source_location": {"ref": first.nodeid.split("::")[0] if first else "controls/catalog.toml",
                            "line": first.line if first else None},
        "results": results,
    }
    waiver = _waiver_data(control.id, tests, waivers, today)
    if waiver is not None:
        doc["waiver_data"] = waiver
    return doc


def hdf_document(catalog: Catalog, verdicts: list[ControlVerdict], results: list[TestResult], *,
                 run: dict[str, Any], waivers: list[Waiver], policy: dict[str, Any] | None,
                 evidence_refs: bool) -> dict[str, Any]:
    """The exec JSON of a run. ``run`` is run.json's content (target, times, suite, tools); ``policy`` the
    policy's judged values (dotted key -> value), written as the profile's inputs; ``evidence_refs`` adds
    each control's evidence files (bundle-relative) to its refs."""
    target = run.get("target", {})
    started, finished = run.get("started"), run.get("finished")
    start = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else datetime.now(UTC)
    end = datetime.fromisoformat(finished.replace("Z", "+00:00")) if finished else datetime.now(UTC)
    run_start = iso8601(start)
    today = end.date()
    per_control: dict[str, list[TestResult]] = {}
    for r in results:
        for c in r.controls:
            per_control.setdefault(c, []).append(r)
    by_id = {v.id: v for v in verdicts}
    controls = [_control(c, by_id[cid], per_control.get(cid, []), waivers, run_start, today, evidence_refs)
                for cid, c in catalog.controls.items() if cid in by_id]
    families: dict[str, list[str]] = {}
    for c in controls:
        families.setdefault(c["tags"]["family"] or "other", []).append(c["id"])
    version = str(run.get("suite", {}).get("version", "0"))
    return {
        "platform": {"name": str(target.get("engine") or "unknown"),
                     "release": str(target.get("server_version") or "unknown"),
                     "target_id": str(target.get("name") or "unknown target")},
        "version": version,
        "statistics": {"duration": round(max((end - start).total_seconds(), 0.0), 3)},
        "profiles": [{
            "name": PROFILE_NAME,
            "title": "Zero-Trust MySQL controls",
            "version": version,
            "summary": "Zero-trust controls for a MySQL/MariaDB deployment, checked by the zero-trust-mysql "
                       "pytest suite (controls/catalog.toml)",
            "maintainer": "zero-trust-mysql",
            "license": "see the project",
            "sha256": hashlib.sha256(json.dumps(catalog.to_json(covered=set()), sort_keys=True).encode()).hexdigest(),
            "supports": [{"platform-name": "mariadb"}, {"platform-name": "mysql"}],
            "attributes": [{"name": key, "options": {"value": value}} for key, value in (policy or {}).items()],
            "groups": [{"id": family, "title": f"{family} controls", "controls": ids}
                       for family, ids in families.items()],
            "status": "loaded",
            "status_message": "",
            "depends": [],
            "controls": controls,
        }],
    }
