"""Reports against the lab: two real bundles, before and after breaking one control
(``local_infile`` switched on at runtime: ZTM-CFG-1), and ``ztm evidence diff`` names exactly
that control as regressed; the control table and ``--fail-on`` see the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
CONTROLS = ("ZTM-CFG-1", "ZTM-TLS-2")  # CFG-1 (medium) is broken below; TLS-2 (high) must not move


@pytest.fixture(scope="module")
def before_after(lab, tmp_path_factory):
    from tests.control_runner import run_control

    out = tmp_path_factory.mktemp("reports")
    before, after = out / "before.tar.gz", out / "after.tar.gz"
    first = run_control(lab.target_file, *CONTROLS, extra=("--evidence-out", str(before)))
    assert first.exit_code == 0, f"the lab must start healthy for these controls:\n{first.output[-3000:]}"
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL local_infile = 1")
    try:
        second = run_control(lab.target_file, *CONTROLS, extra=("--evidence-out", str(after), "-v",
                                                                "--fail-on", "high"))
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL local_infile = 0")
    return before, after, second


def test_summary_and_gate_on_a_broken_lab(before_after):
    _, _, second = before_after
    assert "NOT SATISFIED ZTM-CFG-1 (medium): test_live_variables_hardened" in second.output, second.output[-3000:]
    assert "local_infile" in second.output.split("NOT SATISFIED ZTM-CFG-1")[1].splitlines()[0]
    assert second.exit_code == 0, "--fail-on high: only a medium control is not satisfied"


def test_diff_names_exactly_the_broken_control(lab, before_after):
    before, after, _ = before_after
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "evidence", "diff", str(before), str(after), "--json",
                           "--ca", str(lab.pki.evidence_ca_cert), "--crl", str(lab.pki.evidence_crl)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert [r["id"] for r in doc["regressed"]] == ["ZTM-CFG-1"]
    assert doc["fixed"] == [] and doc["still_failing"] == [] and doc["changed"] == []
    assert "local_infile" in doc["regressed"][0]["reason"]
