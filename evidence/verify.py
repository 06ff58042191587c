"""Verify an evidence bundle offline: signature, every file's hash, nothing missing or added.

Exit codes of ``ztm evidence verify``: 0 verified, 1 verification failed (each problem
named), 2 unusable input (not a bundle, unreadable key or CA).
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from evidence.bundle import MANIFEST, ROOT, SIGNATURE, UNLISTED
from evidence.sign import load_public_key, signature_valid
from ztm.errors import UserError

MAX_MEMBER = 256 * 1024 * 1024


@dataclass
class Verification:
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every regular file under bundle/, by bundle-relative name. Refuses links and odd paths."""
    try:
        tar = tarfile.open(path, "r:gz")  # noqa: SIM115  (closed by the with below, after error mapping)
    except FileNotFoundError:
        raise UserError(f"no bundle at {path}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable evidence bundle (tar.gz): {exc}") from None
    files: dict[str, bytes] = {}
    with tar:
        try:
            for member in tar:
                name = member.name
                if member.isdir():
                    continue
                if not member.isfile() or not name.startswith(ROOT + "/") or ".." in name.split("/"):
                    raise UserError(f"{path}: unexpected entry {name!r} (only regular files under {ROOT}/)")
                if member.size > MAX_MEMBER:
                    raise UserError(f"{path}: entry {name} is implausibly large ({member.size} bytes)")
                handle = tar.extractfile(member)
                files[name.removeprefix(ROOT + "/")] = handle.read() if handle else b""
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise UserError(f"{path} is damaged: {exc}") from None
    return files


def parse_manifest(text: bytes) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.decode(errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"line {number} is not '<sha256>  <file>'")
        entries[name] = digest
    return entries


def verify_bundle(path: Path, *, pubkey: Path | None = None, ca: Path | None = None) -> Verification:
    files = read_bundle(path)
    result = Verification()
    manifest, signature = files.get(MANIFEST), files.get(SIGNATURE)
    if manifest is None or signature is None:
        result.problems.append(f"{MANIFEST if manifest is None else SIGNATURE} is missing: the bundle is not signed")
        return result
    key = _trusted_key(files, pubkey, ca, result)
    if key is not None and not signature_valid(key, signature, manifest):
        result.problems.append(f"{SIGNATURE}: the signature does not match {MANIFEST} under the "
                               f"{'given' if pubkey or ca else 'embedded'} key (manifest altered or wrong key)")
    try:
        listed = parse_manifest(manifest)
    except ValueError as exc:
        result.problems.append(f"{MANIFEST} is malformed: {exc}")
        return result
    for name, digest in sorted(listed.items()):
        data = files.get(name)
        if data is None:
            result.problems.append(f"{name}: listed in the manifest but missing from the bundle")
        elif hashlib.sha256(data).hexdigest() != digest:
            result.problems.append(f"{name}: content changed (SHA-256 differs from the manifest)")
    for name in sorted(set(files) - set(listed) - UNLISTED):
        result.problems.append(f"{name}: present in the bundle but not in the manifest (added)")
    result.files = len(listed)
    return result


def _trusted_key(files: dict[str, bytes], pubkey: Path | None, ca: Path | None, result: Verification):
    embedded_pem = files.get("signer.pub.pem")
    if pubkey is not None:
        try:
            return load_public_key(pubkey.read_bytes(), str(pubkey))
        except OSError as exc:
            raise UserError(f"cannot read public key {pubkey}: {exc.strerror}") from None
    if ca is not None:
        return _key_from_certificate(files, ca, result)
    if embedded_pem is None:
        result.problems.append("signer.pub.pem is missing and no --pubkey or --ca was given")
        return None
    result.notes.append("verified with the public key inside the bundle: this proves integrity, not who signed; "
                        "pass --pubkey or --ca to check the signer")
    try:
        return load_public_key(embedded_pem, "signer.pub.pem")
    except UserError as exc:
        result.problems.append(str(exc))
        return None


def _key_from_certificate(files: dict[str, bytes], ca_path: Path, result: Verification):
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read CA file {ca_path}: {exc.strerror}") from None
    except ValueError:
        raise UserError(f"{ca_path} is not a PEM certificate") from None
    pem = files.get("signer.pem")
    if pem is None:
        result.problems.append("signer.pem is missing: the bundle carries no signer certificate to check against "
                               "the CA (use --pubkey)")
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem)
        cert.verify_directly_issued_by(ca)
    except ValueError as exc:
        result.problems.append(f"signer.pem: not issued by {ca.subject.rfc4514_string()} ({exc})")
        return None
    except (InvalidSignature, TypeError):
        result.problems.append(f"signer.pem: not issued by {ca.subject.rfc4514_string()} (signature check failed)")
        return None
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        result.notes.append(f"signer.pem is outside its validity period now ({cert.not_valid_after_utc:%Y-%m-%d})")
    key = load_public_key(pem, "signer.pem")
    embedded = files.get("signer.pub.pem")
    if embedded is not None and load_public_key(embedded, "signer.pub.pem").public_bytes_raw() != \
            key.public_bytes_raw():
        result.problems.append("signer.pub.pem does not match the key in signer.pem")
    result.notes.append(f"signer: {cert.subject.rfc4514_string()}, issued by {ca.subject.rfc4514_string()}")
    return key
