"""The evidence plugin end to end on a tiny control suite (pytester), then the bundle's
verification: every kind of tampering must fail and name what changed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


@pytest.fixture
def suite(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_controls=SUITE)
    return pytester


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory):
    """One real run of the plugin (a separate pytest process), shared read-only by the tests."""
    work = tmp_path_factory.mktemp("suite")
    (work / "pytest.ini").write_text(INI)
    (work / "test_controls.py").write_text(SUITE)
    key = make_key(work / "signer.key")
    out = work / "bundle.tar.gz"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--evidence-out", str(out),
                           "--evidence-key", str(key)], cwd=work, capture_output=True, text=True)
    assert done.returncode == 1, f"a failing control keeps pytest's exit code 1:\n{done.stdout[-2000:]}"
    assert out.exists()
    return out, key


@pytest.fixture
def bundle(built_bundle, tmp_path):
    out, key = built_bundle
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
    states = {f["target"]["target-id"]: f["target"]["status"]["state"] for f in ar["results"][0]["findings"]}
    assert states == {"ztm-tls-1": "satisfied", "ztm-tls-2": "not-satisfied", "ztm-cfg-1": "not-satisfied"}
    assert len(ar["results"][0]["observations"]) == 3
    assert ar["import-ap"]["href"] == "assessment-plan.json" and "bundle/oscal/assessment-plan.json" in files
    assert b'name="control" value="ZTM-TLS-2"' in files["bundle/junit.xml"]
    assert b"<th>Controls</th>" in files["bundle/report.html"] and b"SC-8(1)" in files["bundle/report.html"]
    run = json.loads(files["bundle/run.json"])
    assert run["tools"]["pytest"] and run["exit_status"] == 1 and run["suite"]["name"] == "zero-trust-mysql"


def test_untampered_bundle_verifies(bundle, tmp_path):
    out, key = bundle
    result = verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem"))
    assert result.ok, result.problems
    assert result.files == len(members(out)) - 2  # everything but the manifest and its signature


@pytest.mark.parametrize("victim", [
    "bundle/results.json", "bundle/report.html", "bundle/junit.xml", "bundle/signer.pub.pem",
    "bundle/evidence/ZTM-TLS-1/test_passes/note.txt", "bundle/oscal/assessment-results.json",
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
    data[5] ^= 0x01
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
    assert any("signature does not match" in p and "given key" in p for p in problems), problems


def test_resigned_bundle_with_own_key_fails_against_the_trusted_key(bundle, tmp_path):
    """An attacker who rewrites a file and re-signs with a key of their own is caught by --pubkey."""
    from evidence.bundle import write_bundle

    out, key = bundle
    files = {n.removeprefix("bundle/"): d for n, d in members(out).items()
             if not n.endswith(("MANIFEST.sha256", "MANIFEST.sha256.sig", "signer.pub.pem"))}
    files["results.json"] = files["results.json"].replace(b'"failed"', b'"passed"')
    forged = serialization.load_pem_private_key(make_key(tmp_path / "forger.key").read_bytes(), None)
    write_bundle(out, files, forged, None)
    assert verify_bundle(out).ok  # self-consistent...
    assert not verify_bundle(out, pubkey=public_of(key, tmp_path / "pub.pem")).ok  # ...but not ours


def test_offline_check_with_openssl_and_sha256sum(bundle, tmp_path):
    out, _ = bundle
    with tarfile.open(out, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "bundle"
    verify = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signer.pub.pem", "-rawin",
                             "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"],
                            cwd=root, capture_output=True, text=True)
    assert verify.returncode == 0 and "Signature Verified Successfully" in verify.stdout, verify.stderr
    assert subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=root).returncode == 0
    (root / "results.json").write_text("{}")
    assert subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=root,
                          capture_output=True).returncode != 0


def test_cli_exit_codes_and_one_line_errors(bundle, tmp_path, capsys):
    out, key = bundle
    assert ztm_main(["evidence", "verify", str(out), "--pubkey", str(public_of(key, tmp_path / "p.pem"))]) == 0
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball at all")
    assert ztm_main(["evidence", "verify", str(garbage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ztm: ") and "not a readable evidence bundle" in err[0]


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
    from evidence.assemble import _validate
    from ztm.errors import UserError

    with pytest.raises(UserError, match=r"schema violation, bundle not signed: run.json: .*required"):
        _validate({"run.json": {"schema_version": 1}})


def test_key_file_is_not_in_the_bundle_and_mode_unchanged(bundle):
    out, key = bundle
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert find_secrets(out, []) == []
