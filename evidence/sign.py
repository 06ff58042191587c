"""Ed25519 signing of the bundle manifest, with keys read from PEM files (ztm.keys)."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.trust import signer_chain
from ztm.errors import UserError
from ztm.keys import load_public_key, load_signing_key, public_pem

__all__ = ["load_public_key", "load_signing_key", "public_pem", "signature_valid"]


def signature_valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


NO_CERTIFICATE = ("ztm evidence: WARNING: signing with {key} but no signer certificate: the bundle can only be "
                  "checked with --pubkey (a key the auditor obtained separately), never against an evidence CA. "
                  "Pass --evidence-cert or set [evidence].signing_cert")


def check_signer(key_path: Path, cert_path: Path | None) -> str | None:
    """Checked before any test runs: the key loads; the certificate file holds certificates only and its leaf
    certifies this key. Returns a warning when there is no certificate (UserError on any defect)."""
    key = load_signing_key(key_path)
    if cert_path is None:
        return NO_CERTIFICATE.format(key=key_path)
    try:
        leaf = signer_chain(cert_path.read_bytes())[0]
    except OSError as exc:
        raise UserError(f"cannot read the signer certificate {cert_path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(f"{cert_path}: {exc}") from None
    if public_pem(key.public_key()) != public_pem(leaf.public_key()):
        raise UserError(f"the signer certificate {cert_path} does not certify the signing key {key_path}: "
                        "no auditor could verify the bundle")
    return None
