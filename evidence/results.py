"""Per-test results, assembled from the setup/call/teardown reports of each test."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from evidence.recorder import REPORT_ATTRIBUTE

MAX_MESSAGE = 4000
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# The skip reason ztm.plugin gives a test that does not apply to the target's engine or version.
NOT_APPLICABLE = "not applicable: "


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class, despite its name

    nodeid: str
    name: str
    controls: list[str]
    outcome: str = "passed"  # passed, failed, skipped, not-applicable, waived, error
    duration: float = 0.0
    message: str = ""
    waiver: str | None = None
    evidence: list[dict[str, str]] = field(default_factory=list)
    folder: str = ""  # where this test's evidence files live in the bundle (assign_folders)
    target: str = ""  # the name of the target the test assessed ("" until known: the run's only target)
    started: float | None = None  # epoch seconds of its first phase (pytest's report.start), for HDF
    line: int | None = None  # 1-based line of the test function, for HDF's source_location

    @property
    def evidence_files(self) -> list[str]:
        return [f"{self.folder}/{item['name']}.{'json' if item['kind'] == 'json' else 'txt'}" for item in self.evidence]

    def add(self, report: pytest.TestReport) -> None:
        self.duration += report.duration
        if self.started is None:
            self.started = getattr(report, "start", None)
        self.evidence.extend(getattr(report, REPORT_ATTRIBUTE, None) or [])
        waiver = getattr(report, "ztm_waiver", None)
        if waiver:  # a failure accepted by a waiver: reported as xfail by pytest, "waived" here
            self.message = _failure_message(report)
            self.waive(waiver)
            return
        if report.passed and not hasattr(report, "wasxfail"):
            return
        if report.skipped:
            if self.outcome == "passed":
                reason = _skip_reason(report)
                self.outcome = "not-applicable" if reason.startswith(NOT_APPLICABLE) else "skipped"
                self.message = reason
            return
        if report.failed:
            kind = "failed" if report.when == "call" else "error"
            if self.outcome not in ("failed", "error"):
                self.outcome, self.message = kind, _failure_message(report)

    def waive(self, reason: str) -> None:
        self.waiver = reason
        self.outcome = "waived"
        self.message = f"waived: {reason}; failure: {self.message}"[:MAX_MESSAGE]

    def to_json(self, mappings: dict[str, dict[str, list[str]]],
                severities: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        severities = severities or {}
        return {
            "nodeid": self.nodeid, "name": self.name,
            "controls": [{"id": c, **severities.get(c, {}), "mappings": mappings.get(c, {})} for c in self.controls],
            "outcome": self.outcome, "duration": round(self.duration, 4), "message": self.message,
            "waiver": self.waiver,
            "evidence": self.evidence_files,
            **({"target": self.target} if self.target else {}),
        }


def _skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"expected failure: {report.wasxfail}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)[-MAX_MESSAGE:]


def _failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    if report.when != "call":
        text = f"error in {report.when}: {text}"
    return text[:MAX_MESSAGE]


def assign_folders(results: list[TestResult]) -> None:
    """``evidence/<first control>/<test name>``; a name taken by an earlier test gets a nodeid hash."""
    used: set[str] = set()
    for result in results:
        base = f"evidence/{result.controls[0] if result.controls else '_untagged'}/{UNSAFE.sub('_', result.name)[:120]}"
        folder = base
        if folder in used:
            folder = f"{base}-{hashlib.sha256(result.nodeid.encode()).hexdigest()[:10]}"
        used.add(folder)
        result.folder = folder


def control_status(results: list[TestResult]) -> str:
    """passed only when every applicable test passed; partial when the others were skipped (not
    assessed). Tests that do not apply to the target are left out; all of them: not-applicable."""
    if not results:
        return "not-covered"
    outcomes = {r.outcome for r in results} - {"not-applicable"}
    if not outcomes:
        return "not-applicable"
    if outcomes & {"failed", "error"}:
        return "failed"
    if "waived" in outcomes:
        return "waived"
    if outcomes == {"passed"}:
        return "passed"
    return "partial" if "passed" in outcomes else "skipped"


def record_report(results: dict[str, TestResult], report) -> TestResult:
    """Add one pytest phase report to the result of its test (made on its first report)."""
    result = results.get(report.nodeid)
    if result is None:
        controls = [v for k, v in report.user_properties if k == "control"]
        result = results[report.nodeid] = TestResult(report.nodeid, report.nodeid.split("::")[-1], controls)
        location = getattr(report, "location", None)
        if location and isinstance(location[1], int):
            result.line = location[1] + 1
    result.target = result.target or next((str(v) for k, v in report.user_properties if k == "target"), "")
    result.add(report)
    return result


def by_target(results: list[TestResult], names: list[str]) -> dict[str, list[TestResult]]:
    """The results of each target, in the order of ``names``; a result that names no target
    belongs to the first (the run's only target). Every name has an entry, maybe empty."""
    groups: dict[str, list[TestResult]] = {name: [] for name in names}
    for result in results:
        groups.setdefault(result.target or names[0], []).append(result)
    return groups
