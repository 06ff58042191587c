"""Ed25519 signing of the bundle manifest, with keys read from PEM files (ztm.keys)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ztm.keys import load_public_key, load_signing_key, public_pem

__all__ = ["load_public_key", "load_signing_key", "public_pem", "signature_valid"]


def signature_valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
