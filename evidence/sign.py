"""Ed25519 signing of the bundle manifest, with keys read from PEM files."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztm.errors import UserError


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the evidence signing key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"the evidence signing key {path} is readable by others (mode {oct(mode & 0o777)}); "
                        "chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 key (the bundle is signed with Ed25519)")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(data: bytes, origin: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise UserError(f"{origin} is neither a PEM public key nor a certificate") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{origin} is not an Ed25519 public key")
    return key


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
    from evidence.trust import signer_chain

    try:
        leaf = signer_chain(cert_path.read_bytes())[0]
    except OSError as exc:
        raise UserError(f"cannot read the signer certificate {cert_path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(f"{cert_path}: {exc}") from None
    if public_pem(key.public_key()) != leaf.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo):
        raise UserError(f"the signer certificate {cert_path} does not certify the signing key {key_path}: "
                        "no auditor could verify the bundle")
    return None
