"""A fleet in one run: repeatable --target parametrizes every test that uses the target, the ids
name the target, one target keeps plain ids, an unreachable target fails only its own tests (under
xdist too), and the bundle holds each target's results (results.json, run.json, OSCAL, HTML)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from evidence.diff import _side, diff, text_lines
from evidence.schemas import HDF_SCHEMA, OSCAL_AR_SCHEMA, problems
from tests.unit.test_evidence_bundle import INI, make_key
from tests.unit.test_target import MINIMAL

SUITE = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_named(target, evidence):
    evidence.text("name", target.name)
    assert target.name != "db-b", f"{target.name} is broken"

@pytest.mark.control("ZTM-CFG-1")
def test_admin(admin):
    pass

@pytest.mark.control("ZTM-NET-2")
@pytest.mark.applies(engine="mariadb")
def test_declared_only():
    pass
'''


def _target(work: Path, name: str, engine: str) -> Path:
    """A valid target file whose server refuses at once (127.0.0.1, port 1)."""
    text = (MINIMAL.replace('name = "vm1"', f'name = "{name}"').replace('host = "192.0.2.10"', 'host = "127.0.0.1"')
            .replace("port = 3306", "port = 1"))
    if engine == "mariadb":
        text = text.replace('engine = "mysql"', 'engine = "mariadb"').replace('">=8.0"', '">=10.6"')
    path = work / f"{name}.toml"
    path.write_text(text)
    return path


def _run(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env={"APP_PW": "unused", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("fleet")
    (work / "pytest.ini").write_text(INI)
    (work / "test_controls.py").write_text(SUITE)
    (work / "secrets").mkdir()
    (work / "secrets" / "probe").write_text("unused\n")  # the targets' secret files are checked at start
    _target(work, "db-a", "mariadb")
    _target(work, "db-b", "mysql")
    make_key(work / "signer.key")
    return work


@pytest.fixture(scope="module")
def fleet_run(work):
    out = work / "fleet.tar.gz"
    done = _run(work, "-n", "2", "-rA", "--target", "db-a.toml", "--target", "db-b.toml",
                "--evidence-out", str(out), "--evidence-key", "signer.key")
    assert out.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    with tarfile.open(out) as tar:
        files = {m.name.removeprefix("bundle/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return done, files


def test_one_target_keeps_plain_ids(work):
    done = _run(work, "--collect-only", "-q", "--target", "db-a.toml")
    assert "test_controls.py::test_named\n" in done.stdout and "[" not in done.stdout.split("\n\n")[0], done.stdout


def test_every_test_runs_once_per_target_with_the_target_in_its_id(work):
    done = _run(work, "--collect-only", "-q", "--target", "db-a.toml", "--target", "db-b.toml")
    ids = {line for line in done.stdout.splitlines() if line.startswith("test_controls.py::")}
    assert ids == {f"test_controls.py::{t}[{n}]" for t in ("test_named", "test_admin", "test_declared_only")
                   for n in ("db-a", "db-b")}, done.stdout


def test_two_targets_of_one_name_are_one_clear_line(work, tmp_path):
    done = _run(work, "--target", "db-a.toml", "--target", str(_target(tmp_path, "db-a", "mysql")))
    assert done.returncode == 4 and "two targets of the fleet are named 'db-a'" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_an_unreachable_target_fails_its_own_tests_under_xdist(fleet_run):
    done, _ = fleet_run
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in out and "INTERNALERROR" not in out, out[-3000:]
    for name in ("db-a", "db-b"):
        # judged from the target's own preflight (ztm.needs) before the admin fixture is set up
        assert f"test_admin[{name}]" in out and "the admin role (root) cannot log in" in out
    assert "PASSED test_controls.py::test_named[db-a]" in out and "FAILED test_controls.py::test_named[db-b]" in out


def test_results_are_keyed_by_target(fleet_run):
    _, files = fleet_run
    results = json.loads(files["results.json"])
    assert list(results["targets"]) == ["db-a", "db-b"]
    status = {name: {c["id"]: c["status"] for c in t["controls"]} for name, t in results["targets"].items()}
    assert status["db-a"]["ZTM-TLS-1"] == "passed" and status["db-b"]["ZTM-TLS-1"] == "failed"
    assert status["db-a"]["ZTM-NET-2"] == "passed" and status["db-b"]["ZTM-NET-2"] == "not-applicable"
    assert {c["id"]: c["status"] for c in results["controls"]}["ZTM-TLS-1"] == "failed"  # the fleet as a whole
    assert {t["nodeid"]: t["target"] for t in results["tests"]}["test_controls.py::test_named[db-b]"] == "db-b"
    assert set(results["targets"]["db-b"]["tests"]) == {f"test_controls.py::{t}[db-b]" for t in
                                                        ("test_named", "test_admin", "test_declared_only")}
    run = json.loads(files["run.json"])
    assert list(run["targets"]) == ["db-a", "db-b"] and run["target"]["name"].startswith("fleet of 2 targets")
    assert run["targets"]["db-b"]["engine"] == "mysql"
    assert run["targets"]["db-a"]["policy"]["file"] == "policy/db-a.json"
    assert "policy/db-a.json" in files and "policy/db-b.json" in files


def test_oscal_has_one_valid_result_per_target(fleet_run):
    _, files = fleet_run
    doc = json.loads(files["oscal/assessment-results.json"])
    assert problems(doc, OSCAL_AR_SCHEMA) == []
    blocks = doc["assessment-results"]["results"]
    assert [b["props"][0]["value"] for b in blocks] == ["db-a", "db-b"]
    state = {b["props"][0]["value"]: {f["props"][0]["value"]: f["target"]["status"]["state"] for f in b["findings"]}
             for b in blocks}
    assert state["db-a"]["ZTM-TLS-1"] == "satisfied" and state["db-b"]["ZTM-TLS-1"] == "not-satisfied"
    plan = json.loads(files["oscal/assessment-plan.json"])["assessment-plan"]
    assert [p["title"] for p in plan["terms-and-conditions"]["parts"]] == [
        "Policy in force on db-a: zero-trust", "Policy in force on db-b: zero-trust"]


def test_hdf_is_one_valid_file_per_target(fleet_run, work):
    _, files = fleet_run
    assert "hdf.json" not in files
    for name in ("db-a", "db-b"):
        doc = json.loads(files[f"hdf/{name}.json"])
        assert problems(doc, HDF_SCHEMA) == [] and doc["platform"]["target_id"] == name
        status = {c["id"]: [r["status"] for r in c["results"]] for c in doc["profiles"][0]["controls"]}
        assert status["ZTM-TLS-1"] == (["passed"] if name == "db-a" else ["failed"])
    done = _run(work, "--target", "db-a.toml", "--target", "db-b.toml", "--hdf", "out.hdf.json", "-k", "test_named")
    assert "out.hdf-db-a.json" in done.stdout and "out.hdf-db-b.json" in done.stdout, done.stdout[-2000:]
    assert json.loads((work / "out.hdf-db-b.json").read_text())["platform"]["target_id"] == "db-b"


def test_html_switches_between_targets_without_a_script(fleet_run):
    done, files = fleet_run
    page = files["assessor.html"].decode()
    assert "<script" not in page and 'id="pick-0"' in page and 'id="pick-1"' in page
    assert 'data-target="db-a"' in page and 'id="target-1" data-target="db-b"' in page
    assert 'id="t1-ZTM-TLS-1"' in page  # each target's sections have their own anchors
    assert "ztm controls: db-a" in done.stdout and "NOT SATISFIED ZTM-TLS-1 (high): test_named[db-b]" in done.stdout


def test_diff_compares_a_fleet_per_target(fleet_run):
    _, files = fleet_run
    old = _side(files, "old")
    results = json.loads(files["results.json"])
    for test in results["tests"]:  # db-a's TLS test fails in the new run, db-b's is fixed
        if test["nodeid"].startswith("test_controls.py::test_named"):
            test["outcome"] = "failed" if test["target"] == "db-a" else "passed"
    new = _side({**files, "results.json": json.dumps(results).encode()}, "new")
    lines = text_lines(diff(old, new), old, new)
    assert any(line.startswith("REGRESSED ZTM-TLS-1 [db-a]") for line in lines), lines
    assert any(line.startswith("FIXED ZTM-TLS-1 [db-b]") for line in lines), lines


def test_diff_of_a_one_target_bundle_against_a_fleet_compares_that_target(fleet_run):
    _, files = fleet_run
    results = json.loads(files["results.json"])
    results["tests"] = [{k: v for k, v in t.items() if k != "target"} | {"nodeid": t["nodeid"].replace("[db-a]", "")}
                        for t in results["tests"] if t["target"] == "db-a"]
    results["targets"] = {"db-a": results["targets"]["db-a"]}
    single = _side({**files, "results.json": json.dumps(results).encode()}, "single")
    fleet = _side(files, "fleet")
    lines = text_lines(diff(single, fleet), single, fleet)
    assert not any(line.startswith(("REGRESSED", "FIXED")) for line in lines), lines  # db-a is unchanged
    assert any(line.startswith("NEWLY ASSESSED ZTM-TLS-1 [db-b]") for line in lines), lines


def test_a_fleet_gets_a_worker_per_target_and_a_waiver_without_target_covers_each(work):
    """No -n: xdist starts one worker per target; a waiver naming the test (no [target]) accepts its
    failure on any target of the fleet."""
    (work / "waivers.toml").write_text(f'''[[waiver]]
control = "ZTM-TLS-1"
test = "test_controls.py::test_named"
justification = "db-b is being rebuilt"
approver = "CISO"
expires = "{date.today() + timedelta(days=30)}"
''')
    done = _run(work, "--target", "db-a.toml", "--target", "db-b.toml", "--waivers", "waivers.toml",
                "-k", "test_named")
    assert "created: 2/2 workers" in done.stdout, done.stdout[-2000:]
    assert done.returncode == 0 and "WAIVED test_controls.py::test_named[db-b]" in done.stdout, done.stdout[-2000:]


def test_the_scheduler_keeps_each_target_on_one_worker():
    from ztm.fleet_xdist import TargetScheduling

    scheduler = TargetScheduling.__new__(TargetScheduling)  # only the scope rule, no xdist session
    scheduler.names = sorted(["db", "db-2"], key=len, reverse=True)
    assert scheduler._split_scope("c/t.py::test_x[db]") == "db"
    assert scheduler._split_scope("c/t.py::test_x[db-2]") == "db-2"
    assert scheduler._split_scope("c/t.py::test_x[db-2-app]") == "db-2"
    assert scheduler._split_scope("c/t.py::test_x[db-app]") == "db"
    assert scheduler._split_scope("c/t.py::test_plain") == "c/t.py"  # no target: by module, as loadscope


def test_one_unreachable_target_under_xdist_fails_its_tests_instead_of_crashing_a_worker(work):
    done = _run(work, "-n", "2", "--target", "db-a.toml", "-k", "test_admin")
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    assert "the admin role (root) cannot log in" in out


def test_one_unreachable_target_in_one_process_fails_its_tests_with_one_line(work):
    done = _run(work, "--target", "db-a.toml", "-k", "test_admin")
    assert done.returncode == 1 and "the admin role (root) cannot log in" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
