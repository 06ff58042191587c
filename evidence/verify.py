"""Verify an evidence bundle offline, by the rules of evidence/README.md ("Verification rules").

Exit codes of ``ztm evidence verify``: 0 verified; 1 verification failed (each problem named;
also no trust anchor given, or a damaged archive); 2 usage (no such file, not a regular
non-empty gzip file, unreadable key, CA or CRL). ``evidence/offline-verify.sh`` implements the
same rules with openssl and coreutils; the forgery-corpus test runs both on every case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.archive import read_bundle as read_archive
from evidence.bundle import MANIFEST, SIGNATURE, TIMESTAMP, UNLISTED
from evidence.sign import load_public_key, signature_valid
from evidence.timestamp import token_time
from evidence.trust import load_anchors, load_crl, signer_chain, validate_signer
from ztm.errors import UserError
from ztm.text import printable

LINE = re.compile(r"[0-9a-f]{64}  ([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)")
NO_ANCHOR = ("no trust anchor: pass --ca EVIDENCE-CA.pem (the evidence CA certificate you hold; optionally --crl "
             "CRL.pem) or --pubkey SIGNER.pub.pem (a key you obtained separately). --trust-embedded-key checks "
             "integrity only, for inspection")
SELF_ASSERTED = ("warning: self-asserted key (--trust-embedded-key): verified with signer.pub.pem from inside the "
                 "bundle. This proves the files are unchanged since signing, not who signed them")
KEEP = frozenset({MANIFEST, SIGNATURE, TIMESTAMP, "signer.pem", "signer.pub.pem"})


@dataclass
class Verification:
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every regular file of a bundle by bundle-relative name, read under the same archive rules."""
    return read_archive(path, None).small


def parse_manifest(text: bytes) -> dict[str, str]:
    """name -> SHA-256 of a canonical manifest: ASCII, LF-terminated lines '<sha256>  <path>', sorted, unique."""
    try:
        body = text.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not canonical: not ASCII") from None
    if not body.endswith("\n") or "\r" in body:
        raise ValueError("not canonical: lines must end with LF (no CR, final LF)")
    entries: dict[str, str] = {}
    previous = ""
    for number, line in enumerate(body[:-1].split("\n"), 1):
        found = LINE.fullmatch(line)
        if found is None or {".", ".."} & set(found.group(1).split("/")) or found.group(1) in UNLISTED:
            raise ValueError(f"not canonical: line {number} is not '<sha256>  <path>' with a plain relative path "
                             f"({printable(line[:120])!r})")
        name = found.group(1)
        if name == previous:
            raise ValueError(f"not canonical: line {number} lists {name} again (duplicate path)")
        if name < previous:
            raise ValueError(f"not canonical: line {number} ({name}) is not sorted")
        entries[name], previous = line[:64], name
    return entries


def verify_bundle(path: Path, *, ca: Path | None = None, pubkey: Path | None = None, crl: Path | None = None,
                  tsa_ca: Path | None = None, trust_embedded: bool = False,
                  now: datetime | None = None) -> Verification:
    """Check ``path`` against what the auditor trusts: the evidence CA ``ca`` (optionally a ``crl``; the TSA
    is checked against ``tsa_ca`` or else ``ca``) or a ``pubkey``; ``trust_embedded`` only inspects.
    ``now`` is the clock for a bundle without a timestamp token."""
    if ca is None and pubkey is None and not trust_embedded:
        raise UserError(NO_ANCHOR, 1)
    if crl is not None and ca is None:
        raise UserError("--crl needs --ca (revocation is checked on the signer certificate's path)", 2)
    anchor = _Anchor(ca, pubkey, crl, tsa_ca, trust_embedded)
    anchors = load_anchors(ca) if ca else []
    revocations = load_crl(crl) if crl else None
    given_key = _read_key(pubkey) if pubkey else None
    contents = read_archive(path, KEEP)
    files, result = contents.small, Verification()
    manifest, signature = files.get(MANIFEST), files.get(SIGNATURE)
    if manifest is None or signature is None:
        result.problems.append(f"{MANIFEST if manifest is None else SIGNATURE} is missing: the bundle is not signed")
        return result
    try:
        listed = parse_manifest(manifest)
    except ValueError as exc:
        result.problems.append(f"{MANIFEST}: {exc}")
        return result
    try:
        key = _signer_key(files, anchor, anchors, revocations, given_key, now or datetime.now(UTC), result)
    except ValueError as exc:
        result.problems.append(str(exc))
        return result
    if not signature_valid(key, signature, manifest):
        result.problems.append(f"{SIGNATURE}: the signature does not match {MANIFEST} under the signer's key "
                               "(manifest altered or signed with another key)")
    for name, digest in listed.items():
        actual = contents.digests.get(name)
        if actual is None:
            result.problems.append(f"{name}: listed in the manifest but missing from the bundle")
        elif actual != digest:
            result.problems.append(f"{name}: content changed (SHA-256 differs from the manifest)")
    for name in sorted(set(contents.digests) - set(listed) - UNLISTED):
        result.problems.append(f"{printable(name)}: present in the bundle but not in the manifest (added)")
    result.files = len(listed)
    return result


@dataclass(frozen=True)
class _Anchor:
    ca: Path | None
    pubkey: Path | None
    crl: Path | None
    tsa_ca: Path | None
    trust_embedded: bool


def _read_key(path: Path) -> Ed25519PublicKey:
    try:
        return load_public_key(path.read_bytes(), str(path))
    except OSError as exc:
        raise UserError(f"cannot read public key {path}: {exc.strerror}", 2) from None
    except UserError as exc:
        raise UserError(str(exc), 2) from None


def _signer_key(files: dict[str, bytes], anchor: _Anchor, anchors: list, crl, given_key: Ed25519PublicKey | None,
                now: datetime, result: Verification) -> Ed25519PublicKey:
    """The verifying key by the anchor's rules; ValueError names why there is none to trust."""
    at, when = now, "now (no timestamp token)"
    token = files.get(TIMESTAMP)
    tsa_ca = anchor.tsa_ca or anchor.ca
    if token is not None and tsa_ca is not None:
        try:
            at = token_time(files[SIGNATURE], token, tsa_ca)
        except ValueError as exc:
            raise ValueError(f"{TIMESTAMP}: the timestamp token does not verify over {SIGNATURE} "
                             f"(TSA CA {tsa_ca.name}): {printable(str(exc))}") from None
        when = f"the timestamp {at:%Y-%m-%dT%H:%M:%SZ}"
    elif token is not None:
        result.notes.append(f"{TIMESTAMP} not checked: pass --tsa-ca to check the timestamp")
    if given_key is not None:
        return given_key
    if anchor.trust_embedded:
        result.notes.append(SELF_ASSERTED)
        if "signer.pub.pem" not in files:
            raise ValueError("signer.pub.pem is missing: no embedded key to inspect with")
        try:
            return load_public_key(files["signer.pub.pem"], "signer.pub.pem")
        except UserError as exc:
            raise ValueError(str(exc)) from None
    pem = files.get("signer.pem")
    if pem is None:
        raise ValueError("signer.pem is missing: the bundle carries no signer certificate to check against the CA")
    key, root = validate_signer(signer_chain(pem), anchors, at, crl)
    leaf_name = printable(signer_chain(pem)[0].subject.rfc4514_string())
    result.notes.append(f"signer: {leaf_name}, certified by {printable(root.subject.rfc4514_string())}, valid at "
                        f"{when}{'' if crl is None else ', not revoked in the CRL'}")
    return key
