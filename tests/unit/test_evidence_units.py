"""Pieces of the evidence plugin without a pytest run: OSCAL documents against NIST's official
schema, result and finding status, evidence folders, command-line redaction, the secret scanner."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import tarfile
import tomllib
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.bundle import write_bundle
from evidence.catalog import load_catalog
from evidence.oscal import (
    NOT_ASSESSED,
    OSCAL_VERSION,
    assessment_plan,
    assessment_results,
    finding_state,
    nist_control_id,
)
from evidence.results import TestResult, assign_folders, control_status
from evidence.run_info import REDACTED, is_secret_name, redact_argv
from evidence.scan import find_secrets
from evidence.schemas import BUNDLE_SCHEMAS, OSCAL_AP_SCHEMA, OSCAL_AR_SCHEMA, problems, schema_for
from tests.unit.test_evidence_bundle import INI, make_key
from ztm.schemas import SCHEMA_DIR

NOW = "2026-11-22T15:00:00Z"


def result(name: str, outcome: str, controls=("ZTM-TLS-1",), message: str = "", waiver: str | None = None):
    r = TestResult(f"controls/test_x.py::{name}", name, list(controls), outcome=outcome, message=message,
                   waiver=waiver)
    r.evidence = [{"name": "scan", "kind": "json", "content": "{}", "recorded_at": NOW}]
    return r


def ar_doc(results: list[TestResult]) -> dict:
    assign_folders(results)
    return assessment_results(load_catalog(), results, target_name="lab one", started=NOW, finished=NOW,
                              version="0.1.0", tools={"pytest": "9.2.0", "python": "3.11.7"})


# -- the official schema ------------------------------------------------------------------------

def test_official_oscal_schema_is_the_recorded_release_asset():
    source = tomllib.loads((SCHEMA_DIR / "oscal" / "SOURCE.toml").read_text())["oscal_assessment-results_schema"]
    data = (SCHEMA_DIR / "oscal" / source["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == source["sha256"] and len(data) == source["bytes"]
    assert json.loads(data)["$id"] == source["schema_id"] == f"http://csrc.nist.gov/ns/oscal/{OSCAL_VERSION}/oscal-ar-schema.json"


def test_assessment_results_validate_against_the_official_schema():
    doc = ar_doc([result("test_a", "passed"), result("test_b", "failed", ("ZTM-TLS-2",), "login accepted\nover TCP"),
                  result("test_c", "skipped", ("ZTM-CFG-1",), "not applicable"),
                  result("test_d", "waived", ("ZTM-NET-1",), "policy accept", waiver="ZTM-NET-1 waived: CHG-1")])
    assert problems(doc, OSCAL_AR_SCHEMA) == []
    ar = doc["assessment-results"]
    assert ar["metadata"]["oscal-version"] == "1.1.2" and uuid.UUID(ar["uuid"]).version == 4
    block = ar["results"][0]
    catalog = load_catalog()
    assert len(block["observations"]) == 4 and len(block["findings"]) == len(catalog.controls)
    tool = block["local-definitions"]["components"][0]["uuid"]
    assert all(o["origins"][0]["actors"][0]["actor-uuid"] == tool for o in block["observations"])
    assert block["observations"][0]["relevant-evidence"][0]["href"] == "../evidence/ZTM-TLS-1/test_a/scan.json"
    waived = next(f for f in block["findings"] if f["target"]["target-id"] == "ztm-net-1")
    assert waived["target"]["status"] == {"state": "not-satisfied", "reason": "fail",
                                          "remarks": "Waived: ZTM-NET-1 waived: CHG-1"}
    controls = {c["control-id"] for c in block["reviewed-controls"]["control-selections"][0]["include-controls"]}
    assert {"sc-8.1", "sc-13", "ac-17.2", "cm-6", "sc-7.5"} <= controls


def test_catalog_controls_without_tests_are_not_assessed_never_satisfied():
    block = ar_doc([result("test_a", "passed")])["assessment-results"]["results"][0]
    assert problems(ar_doc([]), OSCAL_AR_SCHEMA) == [], "a run without tests: every finding not assessed"
    findings = {f["target"]["target-id"]: f for f in block["findings"]}
    assert set(findings) == {c.lower() for c in load_catalog().controls}
    assert findings["ztm-tls-1"]["target"]["status"] == {"state": "satisfied", "reason": "pass"}
    for tid, finding in findings.items():
        if tid == "ztm-tls-1":
            continue
        assert finding["target"]["status"]["state"] == "not-satisfied", tid
        assert finding["target"]["status"]["remarks"].startswith("Not assessed: no test of this control ran"), tid
        assert "related-observations" not in finding
    assert finding_state([]) == ("not-satisfied", "other", NOT_ASSESSED)


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("uuid",), "not-a-uuid", "does not match"),
    (("metadata", "last-modified"), "2026-11-22 15:00", "does not match"),
    (("results", 0, "findings", 0, "target", "status", "state"), "passed", "is not one of"),
    (("results", 0, "findings", 0, "target", "target-id"), "ztm tls 1", "does not match"),
    (("results", 0, "observations", 0, "methods"), [], "should be non-empty"),
])
def test_official_schema_catches_broken_documents(path, value, expected):
    doc = ar_doc([result("test_a", "passed")])
    node = doc["assessment-results"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = problems(doc, OSCAL_AR_SCHEMA)
    assert any(expected in line for line in found), found


def test_unicode_letters_are_tokens_as_nist_means():
    """TokenDatatype uses \\p{L}: only the regex module gets this right (re rejects the pattern outright)."""
    doc = ar_doc([result("test_a", "passed")])
    doc["assessment-results"]["results"][0]["findings"][0]["target"]["target-id"] = "zté-1"
    assert problems(doc, OSCAL_AR_SCHEMA) == []


def test_assessment_plan_subset_uses_the_official_definitions():
    ap = assessment_plan(load_catalog(), ["ZTM-TLS-1"], target_name="lab one", when=NOW, version="0.1.0")
    assert problems(ap, OSCAL_AP_SCHEMA) == []
    assert ap["assessment-plan"]["import-ssp"]["href"] == "urn:ztm:target:lab%20one"
    broken = copy.deepcopy(ap)
    broken["assessment-plan"]["metadata"]["oscal-version"] = " 1.1.2"  # StringDatatype: no leading blank
    del broken["assessment-plan"]["import-ssp"]
    found = problems(broken, OSCAL_AP_SCHEMA)
    assert any("'import-ssp' is a required property" in line for line in found)
    assert any(line.startswith("assessment-plan/metadata/oscal-version") for line in found)


def test_every_bundle_json_has_a_schema_that_exists():
    for name in BUNDLE_SCHEMAS:
        assert (SCHEMA_DIR / schema_for(name)).is_file(), name
    assert schema_for("evidence/ZTM-TLS-1/test_a/scan.json") == "evidence-item.schema.json"
    assert schema_for("evidence/ZTM-TLS-1/test_a/note.txt") is None and schema_for("report.html") is None


# -- status of tests, controls, findings --------------------------------------------------------

@pytest.mark.parametrize(("outcomes", "status", "state"), [
    (["passed", "passed"], "passed", "satisfied"),
    (["passed", "skipped"], "partial", "not-satisfied"),
    (["skipped"], "skipped", "not-satisfied"),
    (["passed", "failed"], "failed", "not-satisfied"),
    (["passed", "error"], "failed", "not-satisfied"),
    (["passed", "waived"], "waived", "not-satisfied"),
])
def test_a_control_is_satisfied_only_if_every_test_passed(outcomes, status, state):
    results = [result(f"test_{i}", o) for i, o in enumerate(outcomes)]
    assert control_status(results) == status
    assert finding_state(results)[0] == state
    assert control_status([]) == "not-covered"


def test_skipped_tests_are_named_in_the_finding():
    state, reason, remarks = finding_state([result("test_a", "passed"),
                                            result("test_b", "skipped", message="no [host] section")])
    assert (state, reason) == ("not-satisfied", "other")
    assert remarks == "Not assessed (skipped): test_b: no [host] section"


def test_nist_ids_in_oscal_form():
    assert [nist_control_id(t) for t in ("SC-8(1)", "AC-6", "SC-13 (FIPS 203)", "x")] == ["sc-8.1", "ac-6", "sc-13",
                                                                                      None]


def test_same_test_name_in_two_modules_gets_two_folders():
    a = TestResult("controls/test_a.py::test_probe[x/y]", "test_probe[x/y]", ["ZTM-TLS-1"])
    b = TestResult("tests/lab/test_b.py::test_probe[x/y]", "test_probe[x/y]", ["ZTM-TLS-1"])
    assign_folders([a, b])
    assert a.folder == "evidence/ZTM-TLS-1/test_probe_x_y_"
    assert b.folder.startswith("evidence/ZTM-TLS-1/test_probe_x_y_-") and b.folder != a.folder


def test_evidence_of_same_named_tests_does_not_collide(pytester, tmp_path):
    pytester.makeini(INI)
    body = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
@pytest.mark.parametrize("v", ["1.2", "1.3"])
def test_probe(evidence, v):
    evidence.json("seen", {"module": __name__, "v": v})
'''
    pytester.makepyfile(test_one=body, test_two=body)
    out = tmp_path / "b.tar.gz"
    pytester.runpytest_subprocess("--evidence-out", str(out), "--evidence-key", str(make_key(tmp_path / "k.key")))
    with tarfile.open(out, "r:gz") as tar:
        seen = [json.loads(tar.extractfile(m).read())["data"] for m in tar if m.name.endswith("/seen.json")]
    assert sorted((s["module"], s["v"]) for s in seen) == [("test_one", "1.2"), ("test_one", "1.3"),
                                                           ("test_two", "1.2"), ("test_two", "1.3")]


# -- no secrets -------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "expected"), [
    (["--db-password", "hunter2"], ["--db-password", REDACTED]),
    (["--db-password=hunter2"], [f"--db-password={REDACTED}"]),
    (["-o", "hsm_pin=1234"], ["-o", f"hsm_pin={REDACTED}"]),
    (["ZTM_KMS_SECRET=abc", "MYSQL_PWD=x"], [f"ZTM_KMS_SECRET={REDACTED}", f"MYSQL_PWD={REDACTED}"]),
    (["--token", "t", "--api-key=k", "--access_key", "a"],
     ["--token", REDACTED, f"--api-key={REDACTED}", "--access_key", REDACTED]),
    (["--evidence-key", "lab/pki/evidence/signer.key", "--mapping", "m", "--pinned", "p"],
     ["--evidence-key", "lab/pki/evidence/signer.key", "--mapping", "m", "--pinned", "p"]),
    (["tests/test_password_policy.py", "-k", "pin"], ["tests/test_password_policy.py", "-k", "pin"]),
])
def test_command_line_redaction(argv, expected):
    assert redact_argv(argv) == expected


def test_secret_names():
    assert all(map(is_secret_name, ["password", "db-passwd", "passphrase", "pin", "X_PIN", "client_secret",
                                    "aws_access_key_id", "apikey", "credentials"]))
    assert not any(map(is_secret_name, ["evidence-key", "mapping", "spinner", "target", "key-file"]))


def test_scanner_finds_encoded_secrets_and_private_keys(tmp_path):
    key = Ed25519PrivateKey.generate()
    out = tmp_path / "b.tar.gz"
    write_bundle(out, {"evidence/X/t/a.txt": b"pw=" + b"S3cr3t-pw".hex().encode(),
                       "evidence/X/t/b.txt": base64.b64encode(b"ALICE-PII-SENTINEL"),
                       "evidence/X/t/c.txt": b"-----BEGIN OPENSSH PRIV" b"ATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
                       "evidence/X/t/d.txt": b'if b"PRIVATE KEY-----" in content:  # a scanner, not a key'},
                 key, None)
    found = find_secrets(out, ["S3cr3t-pw", "ALICE-PII-SENTINEL", "", "short"])
    assert found == ["evidence/X/t/a.txt: contains a secret (hex)",
                     "evidence/X/t/b.txt: contains a secret (base64)",
                     "evidence/X/t/c.txt: contains a PEM private key"]


def test_key_material_catches_the_private_value_but_not_the_public_key(tmp_path):
    """An EC key's PEM carries its public point: the certificate (public evidence) must not count as a leak."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from evidence.sensitive import key_material

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "tsa.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public = key.public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    out = tmp_path / "b.tar.gz"
    write_bundle(out, {"evidence/X/t/public.txt": b"\n".join([
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        *(base64.b64encode(spki[i:]) for i in range(3)), point.hex().encode(), base64.b64encode(point)]),
        "evidence/X/t/dump.json": json.dumps({"d": scalar.hex()}).encode(),
        "evidence/X/t/dump.txt": b"key " + base64.b64encode(scalar)}, Ed25519PrivateKey.generate(), None)
    assert find_secrets(out, key_material(path)) == ["evidence/X/t/dump.json: contains a secret (plain)",
                                                     "evidence/X/t/dump.txt: contains a secret (plain)"]
    assert key_material(tmp_path / "absent.key") == [] and key_material(out) == []
