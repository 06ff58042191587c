"""The policy in force and the catalog severities reach the bundle: policy.json (schema-valid), its
digest in run.json, the plan's parameters, and severity in results, JUnit, OSCAL and the HTML report."""

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.unit.test_evidence_bundle import INI, make_key
from tests.unit.test_target import MINIMAL
from ztm.schemas import errors

SUITE = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_tls(evidence):
    evidence.text("note", "observed")

@pytest.mark.control("ZTM-NET-2")
def test_throttled():
    assert False, "no ban"
'''


def _bundle(work: Path, policy: str) -> dict[str, bytes]:
    """One real run of the plugins (a separate pytest process) against a target with this [policy]."""
    work.mkdir()
    (work / "pytest.ini").write_text(INI)
    (work / "test_controls.py").write_text(SUITE)
    target = work / "target.toml"
    target.write_text(MINIMAL + "\n[policy]\n" + policy)
    (work / "secrets").mkdir()
    (work / "secrets" / "probe").write_text("unused\n")  # the target's secret files are checked at start
    key = make_key(work / "signer.key")
    out = work / "bundle.tar.gz"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "--target", str(target), "--evidence-out", str(out), "--evidence-key", str(key)],
                          cwd=work, capture_output=True, text=True, timeout=300, env={"APP_PW": "unused",
                                                                                     "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and out.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    with tarfile.open(out) as tar:
        return {m.name.removeprefix("bundle/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy-bundles")
    return (_bundle(root / "nist", 'profile = "nist-800-52r2"\n'),
            _bundle(root / "nist-tailored", 'profile = "nist-800-52r2"\n[policy.crypto]\nrecent_records = 50\n'))


def test_policy_json_is_the_policy_in_force_and_run_json_names_its_digest(bundles):
    files, _ = bundles
    policy = json.loads(files["policy.json"])
    assert errors(policy, "policy.schema.json") == []
    assert policy["profile"] == "nist-800-52r2" and "TLS_CHACHA20_POLY1305_SHA256" not in policy["tls"]["tls13_suites"]
    run = json.loads(files["run.json"])["policy"]
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert run == {"profile": "nist-800-52r2", "overridden": [], "file": "policy.json",
                   "sha256": hashlib.sha256(canonical).hexdigest()}
    assert "policy.json" in files["MANIFEST.sha256"].decode(), "policy.json is signed with the rest"


def test_changing_one_value_changes_the_recorded_digest(bundles):
    nist, tailored = (json.loads(files["run.json"])["policy"] for files in bundles)
    assert tailored["overridden"] == ["crypto.recent_records"]
    assert tailored["sha256"] != nist["sha256"]
    assert json.loads(bundles[1]["policy.json"])["crypto"]["recent_records"] == 50


def test_the_assessment_plan_carries_every_policy_value(bundles):
    plan = json.loads(bundles[1]["oscal/assessment-plan.json"])["assessment-plan"]
    (part,) = plan["terms-and-conditions"]["parts"]
    props = {p["name"]: p["value"] for p in part["props"]}
    assert props["policy-profile"] == "nist-800-52r2"
    assert props["policy-sha256"] == json.loads(bundles[1]["run.json"])["policy"]["sha256"]
    values = {p["title"]: [q["value"] for q in p["props"] if q["name"] == "value"] for p in part["parts"]}
    assert values["tls.versions"] == ["TLSv1.2", "TLSv1.3"] and values["crypto.recent_records"] == ["50"]
    sources = {p["title"]: p["prose"] for p in part["parts"]}
    assert "SP 800-52r2 §3.3.1.2" in sources["tls.tls13_suites"]
    assert sources["crypto.recent_records"].startswith("Source: overridden by target file")


def test_severity_reaches_results_junit_oscal_and_the_html_report(bundles):
    files = bundles[0]
    results = json.loads(files["results.json"])
    controls = {c["id"]: c for c in results["controls"]}
    assert (controls["ZTM-TLS-1"]["severity"], controls["ZTM-TLS-1"]["stig_category"]) == ("high", "CAT I")
    assert controls["ZTM-NET-2"]["severity"] == "medium" and "stig_category" not in controls["ZTM-NET-2"]
    failing = next(t for t in results["tests"] if t["name"] == "test_throttled")
    assert failing["controls"][0]["severity"] == "medium"
    assert b'name="severity" value="high"' in files["junit.xml"]
    assert b'name="stig_category" value="CAT I"' in files["junit.xml"]
    findings = json.loads(files["oscal/assessment-results.json"])["assessment-results"]["results"][0]["findings"]
    tls1 = next(f for f in findings if f["target"]["target-id"] == "ztm-tls-1")
    assert {p["name"]: p["value"] for p in tls1["props"]}["severity"] == "high"
    assert b"<th>Severity</th>" in files["report.html"] and b"high (CAT I)" in files["report.html"]
    catalog = json.loads(files["catalog.json"])
    assert {c["id"]: c["severity"] for c in catalog["controls"]}["ZTM-CRY-2"] == "medium"


def test_every_catalog_control_has_a_severity_and_a_bad_one_is_one_clear_error(tmp_path):
    from evidence.catalog import CATALOG_PATH, load_catalog
    from ztm.errors import UserError

    assert {c.severity for c in load_catalog().controls.values()} <= {"high", "medium", "low"}
    bad = tmp_path / "catalog.toml"
    bad.write_text(CATALOG_PATH.read_text().replace('severity = "medium"', 'severity = "urgent"', 1))
    with pytest.raises(UserError, match=r"ZTM-CFG-1 has severity 'urgent', not one of high, medium, low$"):
        load_catalog(bad)
