"""Verify an evidence bundle offline: signature, every file's hash, nothing missing or added.

Exit codes of ``ztm evidence verify``: 0 verified, 1 verification failed (each problem
named; also a damaged or non-bundle archive), 2 usage (no such file, unreadable key or CA).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from evidence.bundle import MANIFEST, ROOT, SIGNATURE, UNLISTED
from evidence.sign import load_public_key, signature_valid
from ztm.errors import UserError

MAX_BUNDLE = 1024 * 1024 * 1024  # unpacked; a bundle is a few MiB
DAMAGED = 1  # a damaged archive fails verification like a changed byte


@dataclass
class Verification:
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _gunzip(path: Path) -> bytes:
    """The whole tar stream, or UserError: checks gzip CRC, length and end of stream, bounded in size."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no bundle at {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; give the bundle file (tar.gz)") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing: header, CRC-32 and size are checked
    try:
        data = inflate.decompress(raw, MAX_BUNDLE + 1)
    except zlib.error as exc:
        raise UserError(f"{path} is not a readable evidence bundle (tar.gz): {exc}", DAMAGED) from None
    if len(data) > MAX_BUNDLE:
        raise UserError(f"{path} unpacks to more than {MAX_BUNDLE // 2**20} MiB: not an evidence bundle", DAMAGED)
    if not inflate.eof:
        raise UserError(f"{path} is damaged: the gzip stream is truncated", DAMAGED)
    if inflate.unused_data:
        raise UserError(f"{path} is damaged: {len(inflate.unused_data)} unexpected bytes after the gzip stream",
                        DAMAGED)
    return data


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every regular file under bundle/, by bundle-relative name. Refuses links, odd paths and damage."""
    stream = _gunzip(path)
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            for member in tar:
                name = member.name
                if member.isdir():
                    continue
                if not member.isfile() or not name.startswith(ROOT + "/") or ".." in name.split("/"):
                    raise UserError(f"{path}: unexpected entry {name!r} (only regular files under {ROOT}/)", DAMAGED)
                if name.removeprefix(ROOT + "/") in files:
                    raise UserError(f"{path}: entry {name} appears twice (a later copy could hide the signed one)",
                                    DAMAGED)
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                if len(data) != member.size:
                    raise UserError(f"{path} is damaged: entry {name} is cut short", DAMAGED)
                files[name.removeprefix(ROOT + "/")] = data
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise UserError(f"{path} is not a readable evidence bundle (tar inside the gzip): {exc}", DAMAGED) from None
    return files


def parse_manifest(text: bytes) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.decode(errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"line {number} is not '<sha256>  <file>'")
        entries[name] = digest
    return entries


SELF_ASSERTED = ("warning: self-asserted key: verified with signer.pub.pem from inside the bundle. This proves the "
                 "files are unchanged since signing, not who signed them; pass --pubkey or --ca to check the signer")


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


def _trusted_key(files: dict[str, bytes], pubkey: Path | None, ca: Path | None,
                 result: Verification) -> Ed25519PublicKey | None:
    if pubkey is not None:
        try:
            key = load_public_key(pubkey.read_bytes(), str(pubkey))
        except OSError as exc:
            raise UserError(f"cannot read public key {pubkey}: {exc.strerror}") from None
        _compare_embedded(files, key, f"the given key {pubkey.name}", result)
        return key
    if ca is not None:
        return _key_from_certificate(files, ca, result)
    embedded_pem = files.get("signer.pub.pem")
    if embedded_pem is None:
        result.problems.append("signer.pub.pem is missing and no --pubkey or --ca was given")
        return None
    result.notes.append(SELF_ASSERTED)
    try:
        return load_public_key(embedded_pem, "signer.pub.pem")
    except UserError as exc:
        result.problems.append(str(exc))
        return None


def _compare_embedded(files: dict[str, bytes], key: Ed25519PublicKey, what: str, result: Verification) -> None:
    embedded = files.get("signer.pub.pem")
    if embedded is None:
        return  # the manifest check names it if it was listed
    try:
        same = load_public_key(embedded, "signer.pub.pem").public_bytes_raw() == key.public_bytes_raw()
    except UserError as exc:
        result.problems.append(str(exc))
        return
    if not same:
        result.problems.append(f"signer.pub.pem: not {what}")


def _load_ca(ca_path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(ca_path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read CA file {ca_path}: {exc.strerror}") from None
    except ValueError:
        raise UserError(f"{ca_path} is not a PEM certificate (or bundle of certificates)") from None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_from_certificate(files: dict[str, bytes], ca_path: Path, result: Verification) -> Ed25519PublicKey | None:
    """The signer's key from signer.pem (leaf first, then any intermediates) chained to a CA in ``ca_path``."""
    anchors = _load_ca(ca_path)
    pem = files.get("signer.pem")
    if pem is None:
        result.problems.append("signer.pem is missing: the bundle carries no signer certificate to check against "
                               "the CA (use --pubkey)")
        return None
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        result.problems.append("signer.pem: not a PEM certificate")
        return None
    leaf, anchor_names = chain[0], ", ".join(a.subject.rfc4514_string() for a in anchors)
    for cert, issuer in pairwise(chain):
        if not _issued_by(cert, issuer):
            result.problems.append(f"signer.pem: {cert.subject.rfc4514_string()} is not issued by the next "
                                   f"certificate in the file ({issuer.subject.rfc4514_string()})")
            return None
    anchor = next((a for a in anchors if _issued_by(chain[-1], a)), None)
    if anchor is None:
        result.problems.append(f"signer.pem: {leaf.subject.rfc4514_string()} does not chain to the CA "
                               f"({anchor_names}): signature check failed")
        return None
    _check_signer_certificate(leaf, files, result)
    try:
        key = load_public_key(pem, "signer.pem")
    except UserError as exc:
        result.problems.append(str(exc))
        return None
    _compare_embedded(files, key, "the key certified in signer.pem", result)
    result.notes.append(f"signer: {leaf.subject.rfc4514_string()}, chained to {anchor.subject.rfc4514_string()}")
    return key


def _check_signer_certificate(leaf: x509.Certificate, files: dict[str, bytes], result: Verification) -> None:
    """A signing certificate, valid when the bundle was signed (run.json's finish time)."""
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            result.problems.append("signer.pem: is a CA certificate, not a signer's")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            result.problems.append("signer.pem: key usage does not allow digital signatures")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if not {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku):
            result.problems.append("signer.pem: extended key usage does not include code signing")
    except x509.ExtensionNotFound:
        pass
    signed_at = _signing_time(files)
    when, label = (signed_at, "when the bundle was signed") if signed_at else (datetime.now(UTC), "now")
    if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
        result.problems.append(f"signer.pem: not valid {label} ({when:%Y-%m-%dT%H:%M:%SZ}; valid "
                               f"{leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d})")
    elif signed_at and datetime.now(UTC) > leaf.not_valid_after_utc:
        result.notes.append(f"signer.pem has expired since ({leaf.not_valid_after_utc:%Y-%m-%d}); it was valid "
                            "when the bundle was signed")


def _signing_time(files: dict[str, bytes]) -> datetime | None:
    try:
        finished = json.loads(files["run.json"])["finished"]
        return datetime.fromisoformat(finished.replace("Z", "+00:00"))
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
