"""The offline check an assessor runs with only openssl and coreutils (evidence/offline-verify.sh,
shown verbatim in evidence/README.md): a good bundle passes, and each forgery fails at the
step that exists to catch it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from evidence.bundle import write_bundle
from tests.unit.test_evidence_bundle import built_bundle, issue_signer, make_ca, make_key, members, rewrite

__all__ = ["built_bundle"]  # the module-scoped fixture: one real plugin run, signed by a CA-certified key

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "evidence" / "offline-verify.sh"


def offline_check(bundle: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT), str(bundle), str(ca)], capture_output=True, text=True, timeout=120)


def test_readme_shows_exactly_the_script_that_is_tested():
    body = "set -eu\n" + SCRIPT.read_text().split("set -eu\n", 1)[1]
    assert body in (ROOT / "evidence" / "README.md").read_text(), "evidence/README.md must show the script verbatim"
    readme = (ROOT / "README.md").read_text()
    if "offline-verify.sh" in readme:  # the project README may show it too: then exactly
        assert body in readme, "README.md must show evidence/offline-verify.sh verbatim"


def test_good_bundle_passes_the_offline_check(built_bundle):
    out, _, ca_pem = built_bundle
    done = offline_check(out, ca_pem)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signer.pem: OK" in done.stdout and "Signature Verified Successfully" in done.stdout
    assert done.stdout.strip().endswith("none added")


def _flip(data: bytes, at: int | None = None) -> bytes:
    raw = bytearray(data)
    raw[len(raw) // 2 if at is None else at] ^= 0x01
    return bytes(raw)


def _resign(files: dict[str, bytes], out: Path, key_path: Path, cert: bytes | None) -> None:
    """What a forger with their own key does: change a result, rebuild manifest and signature."""
    inner = {n.removeprefix("bundle/"): d for n, d in files.items()
             if n.removeprefix("bundle/") not in ("MANIFEST.sha256", "MANIFEST.sha256.sig", "signer.pub.pem",
                                                   "signer.pem")}
    inner["results.json"] = inner["results.json"].replace(b'"failed"', b'"passed"')
    write_bundle(out, inner, serialization.load_pem_private_key(key_path.read_bytes(), None), cert)


def forge(kind: str, files: dict[str, bytes], out: Path, work: Path) -> None:
    if kind == "flipped byte in a file":
        files["bundle/results.json"] = _flip(files["bundle/results.json"])
    elif kind == "flipped byte in the manifest":
        files["bundle/MANIFEST.sha256"] = _flip(files["bundle/MANIFEST.sha256"], at=3)  # inside the first digest
    elif kind == "removed file":
        del files["bundle/catalog.json"]
    elif kind == "added file":
        files["bundle/evidence/ZTM-TLS-1/test_passes/extra.json"] = b'{"data": "planted"}'
    elif kind == "added file outside bundle/":
        files["README.txt"] = b"planted"
    elif kind == "wrong key":  # re-signed by another key; the genuine signer.pem is kept
        _resign(files, out, make_key(work / "forger.key"), files["bundle/signer.pem"])
        return
    elif kind == "signer certificate from a foreign CA":  # same CA name, the forger's own CA key
        ca, ca_key = make_ca(work, "Test Evidence CA")
        key = make_key(work / "forger.key")
        _resign(files, out, key, issue_signer(ca, ca_key, key, work / "forger.pem").read_bytes())
        return
    rewrite(out, files)


# What the failing step prints: the forgery is caught by the step meant for it, not by accident.
FORGERIES = {
    "flipped byte in a file": "results.json: FAILED",
    "flipped byte in the manifest": "Signature Verification Failure",
    "removed file": "catalog.json: FAILED open or read",
    "added file": "> bundle/evidence/ZTM-TLS-1/test_passes/extra.json",
    "added file outside bundle/": "> README.txt",
    "wrong key": "Signature Verification Failure",
    "signer certificate from a foreign CA": "error signer.pem: verification failed",
}


@pytest.mark.parametrize("kind", list(FORGERIES))
def test_each_forgery_fails_the_offline_check(built_bundle, tmp_path, kind):
    out, _, ca_pem = built_bundle
    forged = tmp_path / "forged.tar.gz"
    forge(kind, members(out), forged, tmp_path)
    done = offline_check(forged, ca_pem)
    assert done.returncode != 0, f"{kind} passed the offline check:\n{done.stdout}{done.stderr}"
    assert FORGERIES[kind] in done.stdout + done.stderr, done.stdout + done.stderr
    assert "bundle verified" not in done.stdout
