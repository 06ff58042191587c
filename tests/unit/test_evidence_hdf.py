"""hdf.json (Heimdall Data Format) from a real plugin run, checked with MITRE's own parser.

The run's tests pass, fail, error, skip, are not applicable and are waived; the HDF must carry
each as InSpec would and pass inspecjs's ``convertFile`` (tools/node/hdf-validate.js), while a
broken HDF (an unknown result status, a control without id) is rejected both by convertFile and
by MITRE's exec-JSON schema the bundle writer checks before signing, and InSpec's own exec JSON
(a sample Heimdall Lite ships) is accepted."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from evidence.catalog import load_catalog
from evidence.hdf import HDF_NAME
from evidence.scan import find_in
from evidence.schemas import HDF_SCHEMA, problems
from tests.unit.test_evidence_bundle import CONFTEST, INI, make_key, members
from tests.unit.test_evidence_run_hygiene import APP_PASSWORD, KMS_PIN, PRINTS_SECRETS, SENTINEL, TARGET
from ztm.schemas import SCHEMA_DIR

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = ROOT / "tools" / "node"
VALIDATE = NODE_TOOLS / "hdf-validate.js"
INSPEC_SAMPLE = NODE_TOOLS / "node_modules/@mitre/heimdall-lite/dist/static/samples/good_nginxresults.json"

SUITE = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_tls(evidence):
    evidence.json("matrix", {"TLSv1.3": True})

@pytest.mark.control("ZTM-TLS-2")
def test_plaintext():
    assert False, "plaintext login accepted"

@pytest.fixture
def broken():
    raise RuntimeError("admin path unreachable")

@pytest.mark.control("ZTM-CFG-1")
def test_cfg(broken):
    pass

@pytest.mark.control("ZTM-HST-2")
def test_scap():
    pytest.skip("no [host] section in the target: SCAP scan not run")

@pytest.mark.control("ZTM-CRY-2")
def test_pq():
    pytest.skip("not applicable: MariaDB on OpenSSL 3.0 has no ML-KEM")

@pytest.mark.control("ZTM-TLS-3")
def test_cert_bound():
    pass

@pytest.mark.control("ZTM-TLS-3")
def test_crl():
    pytest.skip("no CRL in the target's [tls] section: revocation not checked")

@pytest.mark.control("ZTM-NET-1")
def test_intruder():
    assert False, "reached 10.77.0.10:22 from the intruder"
'''
WAIVERS = '''
[[waiver]]
control = "ZTM-NET-1"
test = "test_intruder"
justification = "Firewall change window CHG-1234 pending"
approver = "CISO office"
expires = 2099-01-31
'''


def node_available() -> str:
    node = shutil.which("node")
    assert node, "node is not installed (tasks.py install puts Debian's nodejs in APT_PACKAGES)"
    assert (NODE_TOOLS / "node_modules" / "inspecjs").is_dir(), \
        "inspecjs is not installed: tasks.py install runs 'npm ci' in tools/node"
    return node


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node_available(), str(VALIDATE), str(path)], capture_output=True, text=True, timeout=60)


def plain_convert_file(path: Path) -> subprocess.CompletedProcess[str]:
    """inspecjs's convertFile exactly as Heimdall calls it (no keepErrors): prints which format it read."""
    script = ("const {convertFile} = require('inspecjs'); const fs = require('fs');"
              "try { console.log(Object.keys(convertFile(fs.readFileSync(process.argv[1], 'utf8'))).join(',')); }"
              "catch (e) { console.log('threw: ' + e.message); process.exit(1); }")
    return subprocess.run([node_available(), "-e", script, str(path)], cwd=NODE_TOOLS, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real plugin run with --evidence-out and --hdf; returns (bundle's hdf.json bytes, --hdf bytes, stdout)."""
    work = tmp_path_factory.mktemp("hdf")
    (work / "pytest.ini").write_text(INI)
    (work / "conftest.py").write_text(CONFTEST)
    (work / "test_controls.py").write_text(SUITE)
    (work / "waivers.toml").write_text(WAIVERS)
    key = make_key(work / "signer.key")
    out, hdf = work / "bundle.tar.gz", work / "results.hdf.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--evidence-out", str(out),
                           "--evidence-key", str(key), "--hdf", str(hdf), "--waivers", "waivers.toml"],
                          cwd=work, capture_output=True, text=True)
    assert out.exists() and hdf.exists(), done.stdout[-3000:]
    return members(out)[f"bundle/{HDF_NAME}"], hdf.read_bytes(), done.stdout, work


def controls_of(doc: dict) -> dict[str, dict]:
    (profile,) = doc["profiles"]
    return {c["id"]: c for c in profile["controls"]}


def test_hdf_in_the_bundle_and_at_the_chosen_path(run):
    in_bundle, chosen, stdout, work = run
    assert in_bundle == chosen, "--hdf writes the bundle's hdf.json byte for byte"
    assert f"ztm evidence: HDF (Heimdall Data Format) {work / 'results.hdf.json'}" in stdout
    manifest = members(work / "bundle.tar.gz")["bundle/MANIFEST.sha256"].decode()
    assert f"{hashlib.sha256(in_bundle).hexdigest()}  hdf.json" in manifest.splitlines(), "hdf.json is signed"


def test_every_catalog_control_with_impact_tags_and_inspec_statuses(run):
    doc = json.loads(run[0])
    assert set(doc) >= {"platform", "version", "statistics", "profiles"}
    assert doc["platform"] == {"name": "mariadb", "release": "11.4.5-MariaDB", "target_id": "unit-lab"}
    assert doc["statistics"]["duration"] >= 0
    (profile,) = doc["profiles"]
    assert profile["status"] == "loaded" and len(profile["sha256"]) == 64
    controls = controls_of(doc)
    assert list(controls) == list(load_catalog().controls), "one HDF control per catalog control, catalog order"
    assert sorted(i for g in profile["groups"] for i in g["controls"]) == sorted(controls)
    status = {cid: [r["status"] for r in c["results"]] for cid, c in controls.items()}
    assert status["ZTM-TLS-1"] == ["passed"] and status["ZTM-TLS-2"] == ["failed"]
    assert status["ZTM-CFG-1"] == ["error"] and status["ZTM-HST-2"] == ["skipped"]
    assert status["ZTM-CRY-2"] == ["skipped"] and status["ZTM-NET-1"] == ["failed"]
    assert controls["ZTM-TLS-1"]["impact"] == 0.7 and controls["ZTM-CFG-1"]["impact"] == 0.5
    assert controls["ZTM-CRY-2"]["impact"] == 0.0, "not applicable: impact 0.0, as InSpec"
    assert controls["ZTM-CRY-2"]["tags"]["severity"] == "medium"
    failed = controls["ZTM-TLS-2"]["results"][0]
    assert "plaintext login accepted" in failed["message"] and failed["code_desc"].endswith("::test_plaintext")
    assert failed["start_time"].endswith("+00:00") and failed["run_time"] >= 0
    assert "admin path unreachable" in controls["ZTM-CFG-1"]["results"][0]["message"]
    assert controls["ZTM-CRY-2"]["results"][0]["skip_message"].startswith("not applicable: MariaDB")
    assert "no [host] section" in controls["ZTM-HST-2"]["results"][0]["skip_message"]
    partial = {r["code_desc"].split("::")[1]: r for r in controls["ZTM-TLS-3"]["results"]}
    assert [r["status"] for r in partial.values()] == ["skipped", "skipped"], "partly assessed: never Passed"
    assert partial["test_cert_bound"]["skip_message"].startswith("passed, but does not count: ZTM-TLS-3 is not "
                                                                 "assessed as a whole (test_crl skipped: no CRL")
    (untested,) = controls["ZTM-AUD-4"]["results"]
    assert untested["status"] == "skipped" and untested["skip_message"].startswith("Not assessed")
    tags = controls["ZTM-TLS-1"]["tags"]
    assert tags["nist"] == ["SC-8(1)", "SC-13", "SC-23"] and tags["cis"] == ["2.15", "2.17"]
    assert tags["stig_id"] == ["MYS8-00-011500", "MYS8-00-011800"] and tags["gid"] == ["V-235187", "V-235190"]
    assert tags["severity"] == "high" and tags["stig_category"] == "CAT I"
    assert controls["ZTM-TLS-1"]["refs"] == [{"ref": "evidence file evidence/ZTM-TLS-1/test_tls/matrix.json",
                                             "uri": "evidence/ZTM-TLS-1/test_tls/matrix.json"}]
    assert controls["ZTM-TLS-1"]["source_location"] == {"ref": "test_controls.py", "line": 4}


def test_a_waived_failure_is_reported_with_inspec_waiver_data(run):
    net = controls_of(json.loads(run[0]))["ZTM-NET-1"]
    assert net["waiver_data"] == {"justification": "Firewall change window CHG-1234 pending (approved by CISO "
                                                   "office; covers test test_intruder)",
                                  "run": True, "skipped_due_to_waiver": False, "expiration_date": "2099-01-31",
                                  "message": ""}
    assert net["results"][0]["status"] == "failed" and "reached 10.77.0.10:22" in net["results"][0]["message"]
    assert net["tags"]["verdict"] == "waived"


def test_our_hdf_passes_inspecjs_convert_file(run, tmp_path):
    path = tmp_path / "hdf.json"
    path.write_bytes(run[0])
    done = validate(path)
    assert done.returncode == 0 and done.stdout.startswith(f"ok {path}: exec JSON, 1 profile(s), "
                                                           f"{len(load_catalog().controls)} control(s)"), done
    assert plain_convert_file(path).stdout.strip() == "1_0_ExecJson", "convertFile reads it as exec JSON"
    assert problems(json.loads(run[0]), HDF_SCHEMA) == []


def _broken(doc: dict, how: str) -> dict:
    bad = copy.deepcopy(doc)
    control = bad["profiles"][0]["controls"][1]
    if how == "unknown status":
        control["results"][0]["status"] = "waived"
    else:
        del control["id"]
    return bad


@pytest.mark.parametrize("how", ["unknown status", "control without id"])
def test_a_broken_hdf_is_rejected_by_convert_file_and_the_schema(run, tmp_path, how):
    bad = _broken(json.loads(run[0]), how)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    done = validate(path)
    assert done.returncode == 1 and done.stdout.startswith(f"REJECTED {path}: not InSpec exec JSON"), done
    assert len(done.stdout.strip().splitlines()) == 1
    expected = '"waived"' if how == "unknown status" else 'key "id"'
    assert expected in done.stdout, done.stdout
    # convertFile itself, as Heimdall calls it, refuses the file outright (no fallback format reads it).
    plain = plain_convert_file(path)
    assert plain.returncode == 1 and plain.stdout.startswith("threw: Unable to convert input json"), plain
    found = problems(bad, HDF_SCHEMA)
    assert found and (found[0].startswith("profiles/0/controls/1/results/0/status: 'waived' is not valid")
                      if how == "unknown status" else "'id' is a required property" in found[0]), found


def test_inspec_exec_json_is_accepted():
    """A real InSpec exec JSON (nginx baseline results) that Heimdall Lite ships as a sample."""
    node_available()
    done = validate(INSPEC_SAMPLE)
    assert done.returncode == 0 and "exec JSON, 1 profile(s), 41 control(s)" in done.stdout, done
    assert problems(json.loads(INSPEC_SAMPLE.read_text()), HDF_SCHEMA) == []


def test_the_kept_schema_is_mitres(tmp_path):
    source = tomllib.loads((SCHEMA_DIR / "hdf" / "SOURCE.toml").read_text())["exec-json"]
    data = (SCHEMA_DIR / "hdf" / source["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == source["sha256"] and len(data) == source["bytes"]


def test_hdf_alone_without_a_bundle_keeps_secrets_out(pytester, tmp_path, monkeypatch):
    """--hdf without --evidence-out: the same document (no evidence refs), the same secret scan, under xdist."""
    pytester.makeini(INI)
    pytester.makepyfile(test_leaks=PRINTS_SECRETS)
    (pytester.path / "target.toml").write_text(TARGET)
    (pytester.path / "app.password").write_text(APP_PASSWORD + "\n")
    monkeypatch.setenv("ZTM_UNIT_KMS_PIN", KMS_PIN)
    hdf = tmp_path / "only.json"
    result = pytester.runpytest_subprocess("-n", "2", "--target", "target.toml", "--hdf", str(hdf))
    assert result.ret == 1
    assert hdf.exists(), result.stdout.str()[-2000:]
    assert find_in({"hdf": hdf.read_bytes()}, [APP_PASSWORD, KMS_PIN, SENTINEL]) == []
    doc = json.loads(hdf.read_text())
    leaks = controls_of(doc)["ZTM-CRY-1"]
    assert leaks["results"][0]["status"] == "failed" and "***REDACTED***" in leaks["results"][0]["message"]
    assert leaks["refs"] == [], "no bundle: no evidence files to refer to"
    assert validate(hdf).returncode == 0
    # The failure report was masked where the test ran (SecretMask): nothing is left for the HDF's scan.
    result.stdout.fnmatch_lines([f"ztm evidence: HDF (Heimdall Data Format) {hdf} (1 tests)"])
    assert not any(secret in result.stdout.str() for secret in (APP_PASSWORD, KMS_PIN, SENTINEL))


@pytest.mark.parametrize("where", ["dir", "missing-folder", "the-bundle"])
def test_a_bad_hdf_path_is_one_usage_line_before_any_test(pytester, tmp_path, where):
    pytester.makeini(INI)
    pytester.makepyfile(test_x="def test_x():\n    open('ran.marker', 'w')\n")
    path = {"dir": tmp_path, "missing-folder": tmp_path / "no" / "such.json",
            "the-bundle": tmp_path / "b.tar.gz"}[where]
    bundle = ("--evidence-out", str(tmp_path / "b.tar.gz"), "--evidence-key", str(make_key(tmp_path / "k.pem")))
    result = pytester.runpytest_subprocess("--hdf", str(path), *(bundle if where == "the-bundle" else ()))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (pytester.path / "ran.marker").exists()
    assert "--hdf" in result.stderr.str() and "Traceback" not in result.stderr.str()


def test_heimdall_lite_shows_every_control_with_its_status(run, tmp_path):
    """MITRE Heimdall Lite (its npm static build, in headless chromium) loads the HDF: one row per catalog
    control, and the statuses InSpec's conventions give (error: Profile Error, impact 0: Not Applicable)."""
    from tests.heimdall_lite import open_in_heimdall

    path = tmp_path / "hdf.json"
    path.write_bytes(run[0])
    view = open_in_heimdall(path, ROOT / "reports" / "heimdall-unit.png")
    catalog = list(load_catalog().controls)
    assert sorted(i for i, _ in view.rows) == sorted(catalog), view.rows
    assert view.viewed == f"0/{len(catalog)} Controls Viewed"
    shown = dict(view.rows)
    assert (shown["ZTM-TLS-1"], shown["ZTM-TLS-2"], shown["ZTM-CFG-1"]) == ("Passed", "Failed", "Profile Error")
    assert (shown["ZTM-CRY-2"], shown["ZTM-HST-2"], shown["ZTM-AUD-4"]) == ("Not Applicable", "Not Reviewed",
                                                                             "Not Reviewed")
    assert shown["ZTM-TLS-3"] == "Not Reviewed", "one test passed, one was skipped: not assessed, never Passed"
    assert shown["ZTM-NET-1"] == "Failed", "a waived failure (InSpec waiver run: true) still shows as failed"
    assert (ROOT / "reports" / "heimdall-unit.png").stat().st_size > 10000
