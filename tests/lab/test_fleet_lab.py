"""A fleet in one run (issue 17, item 4): the MariaDB and the MySQL lab assessed by one pytest run
under xdist, one bundle that verifies with both targets' results, and a break of one target (its
``local_infile`` switched on) that fails that target's controls only.

The other engine's lab runs in a spare lab instance, named by $ZTM_FLEET_INSTANCE (tasks.py's
fleet step sets it, after the lanes, while both lanes' labs are still up). Without it this test
is skipped: a second lab on a machine that already runs two lanes would slow every lane down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from evidence.schemas import OSCAL_AR_SCHEMA, problems
from tests.control_runner import run_control
from tests.lab.admin_sql import sql_change

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
OTHER_ENGINE = {"mariadb": "mysql", "mysql": "mariadb"}
BROKEN_TEST = "controls/test_cfg_1_server_variables.py::test_live_variables_hardened"


def _ztm(instance: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ZTM_LAB_DIR", "ZTM_ENGINE")}
    return subprocess.run([sys.executable, "-m", "ztm.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, env={**env, "ZTM_LAB_INSTANCE": instance})


@pytest.fixture(scope="module")
def other_lab(lab) -> Path:
    """The other engine's lab in the spare instance: brought up if needed (idempotent), and down
    again afterwards only if this test brought it up."""
    instance = os.environ.get("ZTM_FLEET_INSTANCE", "")
    if not instance.isdigit() or instance == os.environ.get("ZTM_LAB_INSTANCE", "0"):
        pytest.skip("not run in this lane: the fleet test needs a spare lab instance for the other engine, named "
                    "by ZTM_FLEET_INSTANCE (tasks.py runs it as its own step after the lanes)")
    target = ROOT / ("lab" if instance == "0" else f"lab-{instance}") / "target.toml"
    was_up = target.exists()
    engine = OTHER_ENGINE[os.environ.get("ZTM_ENGINE", "mariadb")]
    done = _ztm(instance, "lab", "up", "--engine", engine)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield target
    if not was_up:
        _ztm(instance, "lab", "down")


@pytest.fixture(scope="module")
def fleet_run(lab, lab_target, other_lab, admin_change_module, tmp_path_factory):
    """One run of every control over both labs, with this lane's lab broken (local_infile ON)."""
    bundle = tmp_path_factory.mktemp("fleet") / "fleet.tar.gz"
    with admin_change_module(["SET GLOBAL local_infile = 1"], ["SET GLOBAL local_infile = 0"]):
        run = run_control(lab.target_file, extra=("--target", str(other_lab), "--evidence-out", str(bundle)),
                          timeout=1200)
    assert bundle.is_file(), f"no bundle written (exit {run.exit_code}):\n{run.output[-3000:]}"
    with tarfile.open(bundle, "r:gz") as tar:
        files = {m.name.removeprefix("bundle/"): tar.extractfile(m).read() for m in tar if m.isfile()}
    other = json.loads(files["run.json"])["targets"]
    names = (lab_target.name, next(n for n in other if n != lab_target.name))
    return run, bundle, files, names


@pytest.fixture(scope="module")
def admin_change_module(lab):
    """admin_change for a module-scoped run: the SQL is undone when the block ends."""
    return sql_change(lab)


def test_one_fleet_run_writes_one_bundle_that_verifies(lab, fleet_run):
    run, bundle, _, _ = fleet_run
    assert run.output.count("ztm evidence: signed bundle") == 1, run.output[-3000:]
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "evidence", "verify", str(bundle),
                           "--ca", str(lab.pki.evidence_ca_cert), "--crl", str(lab.pki.evidence_crl)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "verified:" in done.stdout, done.stdout + done.stderr


def test_the_bundle_holds_both_targets_results(fleet_run):
    _, _, files, (broken, healthy) = fleet_run
    results, run = json.loads(files["results.json"]), json.loads(files["run.json"])
    assert set(results["targets"]) == {broken, healthy}
    assert {run["targets"][n]["engine"] for n in (broken, healthy)} == {"mariadb", "mysql"}
    assert all(run["targets"][n].get("server_version") for n in (broken, healthy)), run["targets"]
    per_target = {n: {t["nodeid"].rpartition("[")[0] for t in results["tests"] if t["target"] == n}
                  for n in (broken, healthy)}
    assert per_target[broken] == per_target[healthy] and len(per_target[broken]) > 50  # every test on both
    doc = json.loads(files["oscal/assessment-results.json"])
    assert problems(doc, OSCAL_AR_SCHEMA) == []
    assert [b["props"][0]["value"] for b in doc["assessment-results"]["results"]] == [broken, healthy]
    page = files["assessor.html"].decode()
    assert f'data-target="{broken}"' in page and f'data-target="{healthy}"' in page
    assert {json.loads(files[f"hdf/{n}.json"])["platform"]["name"] for n in (broken, healthy)} == {"mariadb", "mysql"}


def test_breaking_one_target_fails_only_that_targets_controls(fleet_run):
    run, _, files, (broken, healthy) = fleet_run
    assert run.exit_code == 1, run.output[-3000:]
    results = json.loads(files["results.json"])
    bad = {t["nodeid"]: (t["target"], t["message"]) for t in results["tests"] if t["outcome"] in ("failed", "error")}
    assert f"{BROKEN_TEST}[{broken}]" in bad and "local_infile = ON" in bad[f"{BROKEN_TEST}[{broken}]"][1], bad
    assert {target for target, _ in bad.values()} == {broken}, bad  # nothing failed on the healthy target
    status = {n: {c["id"]: c["status"] for c in t["controls"]} for n, t in results["targets"].items()}
    assert status[broken]["ZTM-CFG-1"] == "failed" and status[healthy]["ZTM-CFG-1"] == "passed"
    assert "NOT SATISFIED ZTM-CFG-1" in run.output and f"[{broken}]" in run.output
