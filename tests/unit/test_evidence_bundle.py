"""The evidence plugin end to end on a tiny control suite (pytester), then the bundle's
verification: every kind of tampering must fail and name what changed."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evidence.catalog import load_catalog
from evidence.scan import find_secrets
from evidence.verify import verify_bundle
from ztm.cli import main as ztm_main

SUITE = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_passes(evidence):
    evidence.json("matrix", {"TLSv1.3": True, "TLSv1.2": False})
    evidence.text("note", "observed")

@pytest.mark.control("ZTM-TLS-2")
def test_fails(evidence):
    evidence.json("probe", {"accepted": True})
    assert False, "plaintext login accepted"

@pytest.mark.control("ZTM-CFG-1")
def test_skipped():
    pytest.skip("not applicable to this engine")
'''
INI = "[pytest]\nmarkers =\n    control(id): catalog control id\n"
# Stands in for ztm.plugin's target fixtures: a secret option and the target identity they record.
CONFTEST = '''
import pytest
from ztm.plugin import TARGET_INFO

def pytest_addoption(parser):
    parser.addoption("--db-password", default=None)

@pytest.fixture(autouse=True, scope="session")
def fake_target(pytestconfig):
    pytestconfig.stash[TARGET_INFO] = {"unit-lab": {"name": "unit-lab", "host": "10.77.0.2", "port": 3306,
                                                    "engine": "mariadb", "target_file": "lab/target.toml",
                                                    "server_version": "11.4.5-MariaDB"}}
'''


def make_key(path: Path, mode: int = 0o600) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(mode)
    return path


def public_of(key_path: Path, out: Path) -> Path:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    out.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def make_ca(directory: Path, name: str = "Test Evidence CA") -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name.replace(' ', '_')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key


def issue_signer(ca_pem: Path, ca_key: ec.EllipticCurvePrivateKey, signer_key: Path, out: Path, *,
                 days: int = 30) -> Path:
    ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    public = serialization.load_pem_private_key(signer_key.read_bytes(), None).public_key()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")]))
            .issuer_name(ca.subject).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


@pytest.fixture
def suite(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_controls=SUITE)
    return pytester


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory):
    """One real run of the plugin (a separate pytest process) signed by a CA-certified key, shared read-only."""
    work = tmp_path_factory.mktemp("suite")
    (work / "pytest.ini").write_text(INI)
    (work / "test_controls.py").write_text(SUITE)
    (work / "conftest.py").write_text(CONFTEST)
    key = make_key(work / "signer.key")
    ca_pem, ca_key = make_ca(work)
    cert = issue_signer(ca_pem, ca_key, key, work / "signer.pem")
    out = work / "bundle.tar.gz"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--evidence-out", str(out),
                           "--evidence-key", str(key), "--evidence-cert", str(cert), "--db-password", "S3cr3t-Pw",
                           "-o", "console_output_style=classic"], cwd=work, capture_output=True, text=True)
    assert done.returncode == 1, f"a failing control keeps pytest's exit code 1:\n{done.stdout[-2000:]}"
    assert out.exists()
    return out, key, ca_pem


@pytest.fixture
def bundle(built_bundle, tmp_path):
    out, key, _ = built_bundle
    copy = tmp_path / out.name
    shutil.copyfile(out, copy)
    return copy, key


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def rewrite(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bundle_has_results_evidence_oscal_and_reports(bundle):
    out, _ = bundle
    files = members(out)
    results = json.loads(files["bundle/results.json"])
    outcomes = {t["name"]: t["outcome"] for t in results["tests"]}
    assert outcomes == {"test_passes": "passed", "test_fails": "failed", "test_skipped": "skipped"}
    failing = next(t for t in results["tests"] if t["name"] == "test_fails")
    assert "plaintext login accepted" in failing["message"]
    assert failing["controls"][0]["mappings"]["nist"] == ["SC-8", "SC-8(1)", "AC-17(2)"]
    status = {c["id"]: c["status"] for c in results["controls"]}
    assert (status["ZTM-TLS-1"], status["ZTM-TLS-2"], status["ZTM-NET-1"]) == ("passed", "failed", "not-covered")
    matrix = json.loads(files["bundle/evidence/ZTM-TLS-1/test_passes/matrix.json"])
    assert matrix["data"] == {"TLSv1.2": False, "TLSv1.3": True} and matrix["control"] == "ZTM-TLS-1"
    assert files["bundle/evidence/ZTM-TLS-1/test_passes/note.txt"] == b"observed"
    ar = json.loads(files["bundle/oscal/assessment-results.json"])["assessment-results"]
    findings = {f["target"]["target-id"]: f for f in ar["results"][0]["findings"]}
    states = {tid: f["target"]["status"]["state"] for tid, f in findings.items()}
    assert {k: states.pop(k) for k in ("ztm-tls-1", "ztm-tls-2", "ztm-cfg-1")} == {
        "ztm-tls-1": "satisfied", "ztm-tls-2": "not-satisfied", "ztm-cfg-1": "not-satisfied"}
    others = len(load_catalog().controls) - 3
    assert len(states) == others and set(states.values()) == {"not-satisfied"}, "the other catalog controls"
    net = findings["ztm-net-1"]
    assert net["remarks"].startswith("Not assessed: no test of this control ran") and "related-observations" not in net
    assert {p["name"]: p["value"] for p in net["props"]}["assessment"] == "not-assessed"
    assert len(ar["results"][0]["observations"]) == 3
    assert ar["import-ap"]["href"] == "assessment-plan.json" and "bundle/oscal/assessment-plan.json" in files
    assert b'name="control" value="ZTM-TLS-2"' in files["bundle/junit.xml"]
    assert b"<th>Controls</th>" in files["bundle/report.html"] and b"SC-8(1)" in files["bundle/report.html"]
    assert b"WAIVED" not in files["bundle/report.html"] and b"<!DOCTYPE html>" in files["bundle/report.html"]
    assert b'<link rel="stylesheet" href="assets' not in files["bundle/report.html"], "report.html is self-contained"
    assert files["bundle/signer.pem"].startswith(b"-----BEGIN CERTIFICATE-----")
    run = json.loads(files["bundle/run.json"])
    assert run["tools"]["pytest"] and run["exit_status"] == 1 and run["suite"]["name"] == "zero-trust-mysql"
    assert {"python", "cryptography", "jsonschema", "lxml", "pyOpenSSL"} <= set(run["tools"])
    assert run["target"] == {"name": "unit-lab", "host": "10.77.0.2", "port": 3306, "engine": "mariadb",
                             "target_file": "lab/target.toml", "server_version": "11.4.5-MariaDB"}
    assert run["started"] <= run["finished"] and run["finished"].endswith("Z")
    assert run["command"][run["command"].index("--db-password") + 1] == "***REDACTED***"
    assert "--evidence-key" in run["command"], "a key *file* path is not a secret and stays"


def test_no_secret_in_the_bundle(built_bundle):
    out, key, _ = built_bundle
    assert find_secrets(out, ["S3cr3t-Pw"]) == []
    assert b"PRIVATE KEY" not in b"".join(members(out).values())
    assert os.stat(key).st_mode & 0o777 == 0o600


def test_untampered_bundle_verifies(bundle, tmp_path):
    out, key = bundle
    result = verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem"))
    assert result.ok, result.problems
    assert result.files == len(members(out)) - 2  # everything but the manifest and its signature


def test_untampered_bundle_verifies_against_the_ca(built_bundle, capsys):
    out, _, ca_pem = built_bundle
    result = verify_bundle(out, ca=ca_pem)
    assert result.ok, result.problems
    assert any("signer: CN=signer, certified by CN=Test Evidence CA, valid at now" in n for n in result.notes)


@pytest.mark.parametrize("victim", [
    "bundle/results.json", "bundle/run.json", "bundle/catalog.json", "bundle/report.html", "bundle/junit.xml",
    "bundle/signer.pub.pem", "bundle/signer.pem", "bundle/evidence/ZTM-TLS-1/test_passes/note.txt",
    "bundle/evidence/ZTM-TLS-1/test_passes/matrix.json", "bundle/oscal/assessment-results.json",
    "bundle/oscal/assessment-plan.json",
])
def test_one_flipped_byte_in_any_file_fails_and_names_it(bundle, tmp_path, victim):
    out, key = bundle
    files = members(out)
    data = bytearray(files[victim])
    data[len(data) // 2] ^= 0x01
    files[victim] = bytes(data)
    rewrite(out, files)
    result = verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem"))
    name = victim.removeprefix("bundle/")
    assert any(p.startswith(f"{name}: content changed") for p in result.problems), result.problems


@pytest.mark.parametrize("victim", ["bundle/MANIFEST.sha256", "bundle/MANIFEST.sha256.sig"])
def test_flipped_byte_in_manifest_or_signature_fails_the_signature(bundle, tmp_path, victim):
    out, key = bundle
    files = members(out)
    data = bytearray(files[victim])
    # another hex digit (a manifest hash stays canonical; a bit flip could make it a non-hex byte)
    data[5] = ord("0") if data[5] != ord("0") else ord("1")
    files[victim] = bytes(data)
    rewrite(out, files)
    result = verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem"))
    assert any("signature does not match" in p for p in result.problems), result.problems


def test_removed_and_added_files_are_named(bundle, tmp_path):
    out, key = bundle
    files = members(out)
    del files["bundle/catalog.json"]
    files["bundle/evidence/ZTM-TLS-1/test_passes/extra.json"] = b"{}"
    rewrite(out, files)
    problems = verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem")).problems
    assert "catalog.json: listed in the manifest but missing from the bundle" in problems
    assert any(p.startswith("evidence/ZTM-TLS-1/test_passes/extra.json: present in the bundle but not in")
               for p in problems)


def test_wrong_key_fails(bundle, tmp_path):
    out, _ = bundle
    other = public_of(make_key(tmp_path / "other.key"), tmp_path / "other.pub")
    problems = verify_bundle(out, pubkey=other).problems
    assert any("signature does not match" in p for p in problems), problems


def test_resigned_bundle_with_own_key_fails_against_the_trusted_key(bundle, tmp_path):
    """An attacker who rewrites a file and re-signs with a key of their own is caught by --pubkey."""
    from evidence.bundle import write_bundle

    out, key = bundle
    files = {n.removeprefix("bundle/"): d for n, d in members(out).items()
             if not n.endswith(("MANIFEST.sha256", "MANIFEST.sha256.sig", "signer.pub.pem"))}
    files["results.json"] = files["results.json"].replace(b'"failed"', b'"passed"')
    forged = serialization.load_pem_private_key(make_key(tmp_path / "forger.key").read_bytes(), None)
    write_bundle(out, files, forged, None)
    assert verify_bundle(out, trust_embedded=True).ok  # self-consistent...
    assert not verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem")).ok  # ...but not ours


def test_cli_exit_codes_and_one_line_errors(bundle, tmp_path, capsys):
    out, key = bundle
    assert ztm_main(["evidence", "verify", str(out), "--pubkey", str(public_of(key, tmp_path / "p.pem"))]) == 0
    assert "verified:" in capsys.readouterr().out
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball at all")
    assert ztm_main(["evidence", "verify", str(garbage), "--trust-embedded-key"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ztm: ") and "not a gzip file" in err[0]
    assert ztm_main(["evidence", "verify", str(tmp_path / "absent.tar.gz"), "--trust-embedded-key"]) == 2
    assert capsys.readouterr().err.strip() == f"ztm: no bundle at {tmp_path / 'absent.tar.gz'}"
    with pytest.raises(SystemExit) as usage:
        ztm_main(["evidence", "verify", str(out), "--pubkey", "a.pem", "--ca", "b.pem"])
    assert usage.value.code == 2


def test_truncated_or_corrupt_archive_is_one_line(bundle, tmp_path, capsys):
    out, _ = bundle
    data = out.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.tar.gz"
    raw = bytearray(data)
    raw[len(raw) // 2] ^= 0xFF  # inside the deflate stream: the gzip CRC or the tar headers break
    flipped.write_bytes(bytes(raw))
    for victim in (truncated, flipped):
        assert ztm_main(["evidence", "verify", str(victim), "--trust-embedded-key"]) == 1
        captured = capsys.readouterr()
        lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("ztm: ") and str(victim) in lines[0], lines
    # A tar.gz that is not a bundle: an entry outside bundle/ is refused by name.
    odd = tmp_path / "odd.tar.gz"
    rewrite(odd, {"etc/passwd": b"x"})
    assert ztm_main(["evidence", "verify", str(odd), "--trust-embedded-key"]) == 1
    assert "member 'etc/passwd': bad name" in capsys.readouterr().err


def test_no_trust_anchor_no_pass(bundle, capsys):
    out, _ = bundle
    assert ztm_main(["evidence", "verify", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("ztm: no trust anchor: pass --ca EVIDENCE-CA.pem")
    assert "--pubkey" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_cli_warns_that_the_embedded_key_is_self_asserted(bundle, capsys):
    out, _ = bundle
    assert ztm_main(["evidence", "verify", str(out), "--trust-embedded-key"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: self-asserted key (--trust-embedded-key)")
    assert "not who signed them" in captured.err
    assert "verified:" in captured.out


def test_cli_names_each_problem(bundle, tmp_path, capsys):
    out, key = bundle
    files = members(out)
    files["bundle/junit.xml"] += b"<!-- edited -->"
    del files["bundle/run.json"]
    rewrite(out, files)
    assert ztm_main(["evidence", "verify", str(out), "--pubkey", str(public_of(key, tmp_path / "p.pem"))]) == 1
    captured = capsys.readouterr()
    assert "FAILED: junit.xml: content changed" in captured.out
    assert "FAILED: run.json: listed in the manifest but missing from the bundle" in captured.out
    assert "did not verify (2 problem(s))" in captured.err


def test_ca_check_refuses_another_ca_and_a_swapped_certificate(built_bundle, tmp_path):
    out, _, ca_pem = built_bundle
    other_ca, _ = make_ca(tmp_path, "Other CA")
    problems = verify_bundle(out, ca=other_ca).problems
    assert any(p.startswith("signer.pem: CN=signer is not a valid signer certified by the CA") for p in problems)
    # Same CA, but the certificate of another key put in the bundle: the key does not match the signature.
    work = tmp_path / "swap"
    work.mkdir()
    copy = work / "b.tar.gz"
    shutil.copyfile(out, copy)
    files = members(copy)
    lookalike, lookalike_key = make_ca(work, "Test Evidence CA")  # same name, different key
    forged = issue_signer(lookalike, lookalike_key, make_key(work / "k.key"), work / "forged.pem")
    files["bundle/signer.pem"] = forged.read_bytes()
    rewrite(copy, files)
    problems = verify_bundle(copy, ca=ca_pem).problems
    assert any("is not a valid signer certified by the CA" in p for p in problems), problems


def test_ca_check_names_a_certificate_that_is_not_for_this_key(tmp_path):
    """A bundle signed by one key but carrying a valid CA certificate for another: named, not verified."""
    from evidence.bundle import write_bundle

    ca_pem, ca_key = make_ca(tmp_path)
    signing = make_key(tmp_path / "signing.key")
    other = make_key(tmp_path / "other.key")
    cert = issue_signer(ca_pem, ca_key, other, tmp_path / "other.pem")
    out = tmp_path / "b.tar.gz"
    write_bundle(out, {"results.json": b"{}"}, serialization.load_pem_private_key(signing.read_bytes(), None),
                 cert.read_bytes())
    problems = verify_bundle(out, ca=ca_pem).problems
    assert any(p.startswith("MANIFEST.sha256.sig: the signature does not match") for p in problems), problems


def test_expired_signer_certificate_is_named(tmp_path):
    from evidence.bundle import write_bundle

    ca_pem, ca_key = make_ca(tmp_path)
    key = make_key(tmp_path / "k.key")
    cert = issue_signer(ca_pem, ca_key, key, tmp_path / "old.pem", days=-1)
    out = tmp_path / "b.tar.gz"
    write_bundle(out, {"results.json": b"{}"}, serialization.load_pem_private_key(key.read_bytes(), None),
                 cert.read_bytes())
    problems = verify_bundle(out, ca=ca_pem).problems
    assert any(p.startswith("signer.pem: CN=signer is not a valid signer certified by the CA at") and
               "not valid at validation time" in p for p in problems), problems


def test_scanner_finds_planted_secrets_and_none_in_a_clean_bundle(suite, tmp_path):
    key = make_key(tmp_path / "k.key")
    clean = tmp_path / "clean.tar.gz"
    suite.runpytest_subprocess("--evidence-out", str(clean), "--evidence-key", str(key))
    assert find_secrets(clean, ["S3cr3t-Passw0rd", "ALICE-SENTINEL-PII"]) == []
    suite.makepyfile(test_leak='''
import pytest

@pytest.mark.control("ZTM-CRY-1")
def test_leaks(evidence):
    evidence.text("dump", "row: ALICE-SENTINEL-PII")
    evidence.json("cfg", {"password": "S3cr3t-Passw0rd"})
''')
    leaky = tmp_path / "leaky.tar.gz"
    suite.runpytest_subprocess("--evidence-out", str(leaky), "--evidence-key", str(key))
    findings = find_secrets(leaky, ["S3cr3t-Passw0rd", "ALICE-SENTINEL-PII"])
    assert any("dump.txt" in f for f in findings) and any("cfg.json" in f for f in findings)


def test_private_key_material_is_detected(tmp_path):
    from evidence.bundle import write_bundle

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    out = tmp_path / "b.tar.gz"
    write_bundle(out, {"evidence/X/y/key.txt": pem}, key, None)
    assert find_secrets(out, []) == ["evidence/X/y/key.txt: contains a PEM private key"]


def test_group_readable_key_is_refused_before_any_test(suite, tmp_path):
    key = make_key(tmp_path / "lax.key", mode=0o644)
    result = suite.runpytest_subprocess("--evidence-out", str(tmp_path / "b.tar.gz"), "--evidence-key", str(key))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*readable by others*chmod 600*"])
    assert not (tmp_path / "b.tar.gz").exists()


def test_no_key_means_no_run_rather_than_an_unsigned_bundle(suite, tmp_path, monkeypatch):
    monkeypatch.delenv("ZTM_TARGET", raising=False)
    result = suite.runpytest_subprocess("--evidence-out", str(tmp_path / "b.tar.gz"), "--target",
                                        str(tmp_path / "absent.toml"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*needs a signing key*unsigned bundle is never written*"])


def test_schema_violation_aborts_with_the_file_named():
    from evidence.schemas import validate_documents
    from ztm.errors import UserError

    with pytest.raises(UserError, match=r"schema violation, bundle not signed: run.json: .*required"):
        validate_documents({"run.json": {"schema_version": 1}})
    with pytest.raises(UserError, match=r"notes.json: no schema is defined"):
        validate_documents({"notes.json": {}})


def test_schema_violation_in_a_run_writes_no_bundle_and_says_why(pytester, tmp_path):
    pytester.makeini(INI)
    pytester.makeconftest('''
from evidence.results import TestResult

original = TestResult.to_json
TestResult.to_json = lambda self, *args: {**original(self, *args), "unexpected": 1}
''')
    pytester.makepyfile(test_ok='''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_ok():
    pass
''')
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess("--evidence-out", str(out), "--evidence-key", str(make_key(tmp_path / "k")))
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR and not out.exists()
    result.stdout.fnmatch_lines(["ztm evidence: no bundle written: schema violation, bundle not signed: "
                                 "results.json: tests/0: Additional properties are not allowed ('unexpected'*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_bad_evidence_name_fails_only_that_test(pytester, tmp_path):
    pytester.makeini(INI)
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_bad(evidence):
    evidence.json("../escape", {"x": 1})
''')
    result = pytester.runpytest_subprocess("--evidence-out", str(tmp_path / "b.tar.gz"), "--evidence-key",
                                           str(make_key(tmp_path / "k.key")))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*evidence name '../escape': use letters, digits*"])
