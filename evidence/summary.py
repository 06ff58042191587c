"""Control-level verdicts of a run: the terminal table at the end of every run and the
``--fail-on SEVERITY`` gate.

A control is *satisfied* only when every one of its tests passed (tests found not applicable
aside); a failed or errored test makes it *not satisfied*; a failure accepted by a waiver makes
it *waived*; a control whose tests were all not applicable is *not applicable*; anything else
(no test ran, or some were skipped) is *not assessed*, never satisfied. A fleet run prints one
table per target; the gate judges the whole fleet (a control failing on any target counts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from evidence.catalog import Catalog
from evidence.results import TestResult, record_report

SATISFIED, NOT_SATISFIED, WAIVED = "satisfied", "not satisfied", "waived"
NOT_ASSESSED, NOT_APPLICABLE = "not assessed", "not applicable"
VERDICTS = (SATISFIED, NOT_SATISFIED, WAIVED, NOT_ASSESSED, NOT_APPLICABLE)
NA_OUTCOMES = {"not-applicable", "not_applicable"}  # a test's outcome when preflight finds the control not applicable
RANK = {"low": 1, "medium": 2, "high": 3}
GATES = ("any", "low", "medium", "high")
COLOUR = {SATISFIED: {"green": True}, NOT_SATISFIED: {"red": True, "bold": True}, WAIVED: {"yellow": True},
          NOT_ASSESSED: {"yellow": True}, NOT_APPLICABLE: {}}


@dataclass(frozen=True)
class ControlVerdict:
    id: str
    severity: str
    title: str
    family: str
    verdict: str
    passed: int
    total: int
    reason: str  # the first reason of a verdict other than satisfied, one line

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "title": self.title, "family": self.family,
                "verdict": self.verdict, "passed": self.passed, "total": self.total, "reason": self.reason}


def one_line(text: str, limit: int = 200) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def verdict_of(results: list[TestResult]) -> tuple[str, str]:
    """(verdict, first reason) of one control from its tests' outcomes."""
    if not results:
        return NOT_ASSESSED, "no test of this control ran"
    failed = [r for r in results if r.outcome in ("failed", "error")]
    if failed:
        return NOT_SATISFIED, f"{failed[0].name}: {one_line(failed[0].message)}"
    waived = [r for r in results if r.outcome == "waived"]
    if waived:
        return WAIVED, f"{waived[0].name}: {one_line(waived[0].waiver or waived[0].message)}"
    applicable = [r for r in results if r.outcome not in NA_OUTCOMES]
    if not applicable:
        return NOT_APPLICABLE, f"{results[0].name}: {one_line(results[0].message)}"
    if all(r.outcome == "passed" for r in applicable):
        return SATISFIED, ""
    skipped = next(r for r in applicable if r.outcome != "passed")
    return NOT_ASSESSED, f"{skipped.name} {skipped.outcome}: {one_line(skipped.message)}"


def control_verdicts(catalog: Catalog, results: Iterable[TestResult],
                     only: Iterable[str] = ()) -> list[ControlVerdict]:
    """One verdict per catalog control (or per control in ``only``), in catalog order."""
    per_control: dict[str, list[TestResult]] = {}
    for result in results:
        for cid in result.controls:
            per_control.setdefault(cid, []).append(result)
    wanted = set(only)
    out = []
    for cid, control in catalog.controls.items():
        if wanted and cid not in wanted:
            continue
        tests = per_control.get(cid, [])
        verdict, reason = verdict_of(tests)
        out.append(ControlVerdict(cid, control.severity, control.title, control.family, verdict,
                                  sum(r.outcome == "passed" for r in tests), len(tests), reason))
    return out


def gate_fails(verdicts: Iterable[ControlVerdict], gate: str) -> list[ControlVerdict]:
    """The not-satisfied controls at or above the gate's severity (waived ones never count)."""
    floor = RANK.get(gate, 0)  # "any": every severity
    return [v for v in verdicts if v.verdict == NOT_SATISFIED and RANK[v.severity] >= floor]


def table_lines(verdicts: list[ControlVerdict], verbosity: int) -> list[tuple[str, dict[str, bool]]]:
    """The terminal lines: the table (unless quiet), then one reason line per not-satisfied control."""
    lines: list[tuple[str, dict[str, bool]]] = []
    counts = {v: sum(c.verdict == v for c in verdicts) for v in VERDICTS}
    if verbosity >= 0:
        width = max((len(v.title) for v in verdicts), default=5)
        width = min(width, 60)
        lines.append((f"{'control':<11} {'severity':<8} {'title':<{width}} {'verdict':<14} tests", {}))
        for v in verdicts:
            title = v.title if len(v.title) <= width else v.title[: width - 1] + "…"
            lines.append((f"{v.id:<11} {v.severity:<8} {title:<{width}} {v.verdict:<14} {v.passed}/{v.total}",
                          COLOUR[v.verdict]))
    for v in verdicts:
        if v.verdict == NOT_SATISFIED:
            lines.append((f"NOT SATISFIED {v.id} ({v.severity}): {v.reason}", COLOUR[NOT_SATISFIED]))
    lines.append(("controls: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n), {}))
    return lines


class ControlSummary:
    """On the controller (never an xdist worker): collects every test report, prints the control table
    in the terminal summary and applies ``--fail-on`` to the exit status."""

    def __init__(self, config: pytest.Config, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self.results: dict[str, TestResult] = {}
        self.gate = config.option.fail_on
        self.gated: list[ControlVerdict] | None = None  # set when the gate decided the exit status
        self.untagged: list[str] = []  # failed tests of no control: the gate cannot excuse them

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record_report(self.results, report)

    def verdicts(self) -> list[ControlVerdict]:
        """Over the whole run: in a fleet a control failing on any target is not satisfied (the gate)."""
        return control_verdicts(self.catalog, self.results.values(), self.config.option.control)

    def target_verdicts(self) -> dict[str, list[ControlVerdict]]:
        """Each target's verdicts, by name; {} unless the run assessed a fleet."""
        names = list(dict.fromkeys(r.target for r in self.results.values() if r.target))
        if len(names) < 2:
            return {}
        return {name: control_verdicts(self.catalog, [r for r in self.results.values() if r.target == name],
                                       self.config.option.control) for name in names}

    def _assessed_any(self) -> bool:
        return any(r.controls for r in self.results.values())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        # Before the terminal reporter and the bundle writer read the exit status.
        if self.gate != "any" and session.exitstatus == pytest.ExitCode.TESTS_FAILED:
            self.untagged = [r.nodeid for r in self.results.values()
                             if not r.controls and r.outcome in ("failed", "error")]
            self.gated = gate_fails(self.verdicts(), self.gate)
            if not self.gated and not self.untagged:
                session.exitstatus = pytest.ExitCode.OK
        return (yield)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        verbosity = self.config.get_verbosity()
        if not self._assessed_any() or verbosity < -1:
            return
        per_target = self.target_verdicts()
        for name, verdicts in per_target.items() or [("", self.verdicts())]:
            terminalreporter.section(f"ztm controls: {name}" if name else "ztm controls", sep="=", bold=True)
            for text, markup in table_lines(verdicts, verbosity):
                terminalreporter.write_line(text if not name or not text.startswith(("NOT SATISFIED", "controls:"))
                                            else f"{text} [{name}]", **markup)
        if self.gated is not None:
            if self.gated or self.untagged:
                why = [v.id for v in self.gated] + [f"{n} (no control)" for n in self.untagged[:3]]
                terminalreporter.write_line(f"--fail-on {self.gate}: exit 1, failing at or above {self.gate}: "
                                            + ", ".join(why), red=True)
            else:
                terminalreporter.write_line(f"--fail-on {self.gate}: no control at or above {self.gate} is not "
                                            "satisfied", green=True)
