"""Ed25519 keys in PEM files: the signing keys of evidence bundles and of anchors.

A private key file must be readable by its owner only; a public key may come as a PEM
public key or inside a certificate.
"""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztm.errors import UserError


def load_signing_key(path: Path, purpose: str = "evidence signing key") -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file that only its owner can read.
    ``purpose`` names the key in messages (``the {purpose} {path} ...``)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the {purpose} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"the {purpose} {path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 key (the {purpose} must be Ed25519)")
    return key


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: write it with mode 0600 from creation."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(data: bytes, origin: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM public key or a PEM certificate; ``origin`` names it in messages."""
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
