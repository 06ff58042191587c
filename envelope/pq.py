"""Post-quantum hybrid wrap of a DEK: HPKE with ML-KEM-768 + X25519, HKDF-SHA256, AES-256-GCM
(``cryptography``'s hpke module), to an organisation public key, the context as HPKE info.

The organisation private key (ML-KEM seed and X25519 key, 96 bytes) is stored only wrapped
by the KMS. If the crypto backend lacks ML-KEM, every entry point fails closed.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from envelope.context import PQ_PRIVATE_KEY_CONTEXT
from envelope.kms.base import Kms, WrappedKey
from ztm.errors import UserError
from ztm.files import write_private

PQ_ALG = "HPKE-MLKEM768-X25519-HKDF-SHA256-AES-256-GCM"
SEED_BYTES, X25519_BYTES, MLKEM768_PUBLIC_BYTES = 64, 32, 1184


def _hpke():
    try:
        from cryptography.hazmat.primitives import hpke
        from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

        suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
        mlkem.MLKEM768PrivateKey.generate()
    except Exception as exc:  # any failure here means: no usable ML-KEM in this backend
        raise UserError(f"the crypto backend lacks ML-KEM-768 hybrid HPKE ({type(exc).__name__}); refusing to "
                        "write or read post-quantum wraps") from None
    return hpke, mlkem, x25519, suite


@dataclass(frozen=True)
class PqPublicKey:
    mlkem: bytes
    x25519: bytes

    def to_json(self) -> dict[str, str]:
        return {"alg": PQ_ALG, "mlkem768": base64.b64encode(self.mlkem).decode(),
                "x25519": base64.b64encode(self.x25519).decode()}

    @classmethod
    def load(cls, path: Path) -> PqPublicKey:
        try:
            doc = json.loads(path.read_text())
            key = cls(base64.b64decode(doc["mlkem768"]), base64.b64decode(doc["x25519"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot read the PQ public key {path}: {exc}") from None
        if doc.get("alg") != PQ_ALG or len(key.mlkem) != MLKEM768_PUBLIC_BYTES or len(key.x25519) != X25519_BYTES:
            raise UserError(f"the PQ public key {path} is not an {PQ_ALG} key")
        return key


def generate_keypair() -> tuple[bytes, PqPublicKey]:
    """(private material: ML-KEM seed || X25519 raw, public key)."""
    _, mlkem, x25519, _ = _hpke()
    from cryptography.hazmat.primitives import serialization

    seed = os.urandom(SEED_BYTES)
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    x = x25519.X25519PrivateKey.generate()
    raw_x = x.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return seed + raw_x, PqPublicKey(m.public_key().public_bytes_raw(), x.public_key().public_bytes_raw())


def _private(material: bytes):
    hpke, mlkem, x25519, _ = _hpke()
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(material[:SEED_BYTES])
    x = x25519.X25519PrivateKey.from_private_bytes(material[SEED_BYTES:SEED_BYTES + X25519_BYTES])
    return hpke.MLKEM768X25519PrivateKey(m, x)


def wrap(dek: bytes, public: PqPublicKey, info: bytes) -> bytes:
    hpke, mlkem, x25519, suite = _hpke()
    key = hpke.MLKEM768X25519PublicKey(mlkem.MLKEM768PublicKey.from_public_bytes(public.mlkem),
                                       x25519.X25519PublicKey.from_public_bytes(public.x25519))
    return suite.encrypt(dek, key, info=info)


def unwrap(blob: bytes, private_material: bytes, info: bytes) -> bytes:
    _, _, _, suite = _hpke()
    try:
        return suite.decrypt(blob, _private(private_material), info=info)
    except Exception:  # InvalidTag and friends: one clear refusal
        raise UserError("the post-quantum wrap does not open with this key and context") from None


def save_private_wrapped(material: bytes, kms: Kms, path: Path) -> None:
    """Wrap the private material under ``kms`` (the PQ key's own KEK) and write it 0600 from
    the first byte; the unwrapped material is never written anywhere."""
    wrapped = kms.wrap(material, PQ_PRIVATE_KEY_CONTEXT)
    text = json.dumps({"alg": PQ_ALG, "key_id": wrapped.key_id, "key_version": wrapped.key_version,
                       "blob": base64.b64encode(wrapped.blob).decode()}) + "\n"
    write_private(path, text)


def read_private_wrapped(path: Path) -> WrappedKey:
    try:
        doc = json.loads(path.read_text())
        wrapped = WrappedKey(base64.b64decode(doc["blob"]), doc["key_id"], int(doc["key_version"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the wrapped PQ private key {path}: {exc}") from None
    if doc.get("alg") != PQ_ALG:
        raise UserError(f"the wrapped PQ private key {path} is for suite {doc.get('alg')!r}, not {PQ_ALG}")
    return wrapped


def load_private(path: Path, kms: Kms) -> bytes:
    material = kms.unwrap(read_private_wrapped(path), PQ_PRIVATE_KEY_CONTEXT)
    if len(material) != SEED_BYTES + X25519_BYTES:
        raise UserError(f"the PQ private key unwrapped from {path} has {len(material)} bytes, not "
                        f"{SEED_BYTES + X25519_BYTES}")
    return material
