"""Run control modules in a separate pytest process and read what each test concluded.

Sensitivity tests use it to show that a control *fails*, and why, once the lab is broken.
A separate process keeps the control run honest: same plugin, same options as an assessor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
CONTROLS = ROOT / "controls"


@dataclass(frozen=True)
class TestOutcome:
    name: str
    outcome: str  # passed, failed, error, skipped
    message: str


@dataclass
class ControlRun:
    control: str
    exit_code: int
    tests: dict[str, TestOutcome]
    output: str

    def outcome(self, test: str) -> TestOutcome:
        matches = [t for name, t in self.tests.items() if name == test or name.startswith(test + "[")]
        assert matches, f"{test} did not run for {self.control}; ran: {sorted(self.tests)}\n{self.output[-2000:]}"
        failed = [t for t in matches if t.outcome in ("failed", "error")]
        return failed[0] if failed else matches[0]

    def assert_failed(self, test: str, *reasons: str) -> str:
        """``test`` failed (not errored or skipped) and its message names every reason."""
        got = self.outcome(test)
        assert got.outcome == "failed", f"{self.control}:{test} was {got.outcome}, expected failed: {got.message}"
        for reason in reasons:
            assert reason.lower() in got.message.lower(), (
                f"{self.control}:{test} failed without naming {reason!r}: {got.message[:800]}")
        assert self.exit_code == 1, f"pytest exit code {self.exit_code} for a failing control"
        return got.message

    def assert_all_passed(self) -> None:
        bad = {n: t for n, t in self.tests.items() if t.outcome in ("failed", "error")}
        assert not bad, "\n".join(f"{n}: {t.outcome}: {t.message[:500]}" for n, t in bad.items())
        assert self.tests, f"no test ran for {self.control}:\n{self.output[-2000:]}"


def module_for(control: str) -> Path:
    family, number = control.removeprefix("ZTM-").lower().split("-")
    found = sorted(CONTROLS.glob(f"test_{family}_{number}_*.py"))
    assert len(found) == 1, f"expected one module for {control}, found {found}"
    return found[0]


def run_control(target_file: Path, *controls: str, extra: tuple[str, ...] = (),
                wrapper: tuple[str, ...] = (), timeout: int = 600) -> ControlRun:
    """``wrapper`` prefixes the pytest command (e.g. setpriv, to run as a less privileged assessor)."""
    paths = [str(module_for(c)) for c in controls] if controls else [str(CONTROLS)]
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        argv = [*wrapper, sys.executable, "-m", "pytest", *paths, "--target", str(target_file), f"--junitxml={junit}",
                "-q", "-p", "no:cacheprovider", "-o", "junit_logging=no", *extra]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ), timeout=timeout)
        tests = _parse_junit(junit) if junit.exists() else {}
    return ControlRun(",".join(controls) or "all", done.returncode, tests, done.stdout + done.stderr)


def _parse_junit(path: Path) -> dict[str, TestOutcome]:
    tests: dict[str, TestOutcome] = {}
    for case in etree.parse(str(path)).iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                message = (node.get("message") or "") + "\n" + (node.text or "")
                break
        tests[case.get("name", "")] = TestOutcome(case.get("name", ""), outcome, message)
    return tests
