"""Write the evidence bundle: files, MANIFEST.sha256, its Ed25519 signature, then tar.gz.

Layout (DESIGN §7): ``bundle/`` holding MANIFEST.sha256 (sha256sum format, every other
file), MANIFEST.sha256.sig (raw 64-byte Ed25519 signature), MANIFEST.sha256.tsr (RFC 3161
token over the signature, when a TSA is configured), signer.pub.pem (informational) and
signer.pem (the signer's certificates, leaf first) when the signer has a certificate,
run.json, results.json, catalog.json, oscal/, hdf.json, assessor.html, report.html, junit.xml,
evidence/<control>/<test>/...
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.sign import public_pem
from ztm.errors import UserError

ROOT = "bundle"
MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sha256.sig"
TIMESTAMP = "MANIFEST.sha256.tsr"
UNLISTED = {MANIFEST, SIGNATURE, TIMESTAMP}


def json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


def manifest_text(files: dict[str, bytes]) -> bytes:
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}" for name, data in sorted(files.items())]
    return ("\n".join(lines) + "\n").encode()


def check_destination(value: str) -> Path:
    """Where the bundle will go; UserError when it cannot be written there (checked before any test runs)."""
    out = Path(value).expanduser()
    if not value or out.is_dir():
        raise UserError(f"--evidence-out {value!r} is a directory: name the bundle file, e.g. {out / 'bundle.tar.gz'}")
    if out.exists() and not out.is_file():
        raise UserError(f"--evidence-out {value}: exists and is not a regular file (it would be replaced)")
    parent = out.resolve().parent
    if not parent.exists():
        raise UserError(f"--evidence-out {value}: folder {parent} does not exist")
    if not parent.is_dir():
        raise UserError(f"--evidence-out {value}: {parent} is not a folder")
    try:  # the way write_bundle writes: a temporary file next to the bundle, then a rename
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".check")
    except OSError as exc:
        raise UserError(f"--evidence-out {value}: cannot write in {parent} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return out.resolve()


def write_bundle(out: Path, files: dict[str, bytes], key: Ed25519PrivateKey, cert_pem: bytes | None,
                 timestamp: Callable[[bytes], bytes | None] | None = None) -> None:
    """Sign ``files`` (bundle-relative name -> content), time-stamp the signature, write the tar.gz atomically.

    ``timestamp(signature)`` returns the TSA's RFC 3161 reply (MANIFEST.sha256.tsr), or None."""
    files = dict(files)
    files["signer.pub.pem"] = public_pem(key.public_key())
    if cert_pem is not None:
        files["signer.pem"] = cert_pem
    manifest = manifest_text(files)
    files[MANIFEST] = manifest
    files[SIGNATURE] = key.sign(manifest)
    token = timestamp(files[SIGNATURE]) if timestamp is not None else None
    if token is not None:
        files[TIMESTAMP] = token
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    now = int(time.time())
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(f"{ROOT}/{name}")
                info.size, info.mtime, info.mode = len(files[name]), now, 0o644
                tar.addfile(info, io.BytesIO(files[name]))
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the bundle to {out}: {exc.strerror}") from None
