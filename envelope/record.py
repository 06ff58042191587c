"""AES-256-GCM encryption of a record's PII fields, each bound to its row by the AAD."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope.context import FORMAT, field_aad
from ztm.errors import UserError

IV_BYTES = 12
DEK_BYTES = 32  # AES-256


@dataclass(frozen=True)
class SealedField:
    ct: bytes
    iv: bytes
    aad: bytes


def new_dek() -> bytes:
    return AESGCM.generate_key(bit_length=DEK_BYTES * 8)


def seal(dek: bytes, plaintext: str, *, tenant: str, table: str, column: str, record: str,
         key_version: int, fmt: str = FORMAT) -> SealedField:
    aad = field_aad(tenant=tenant, table=table, column=column, record=record, key_version=key_version, fmt=fmt)
    iv = os.urandom(IV_BYTES)
    return SealedField(AESGCM(dek).encrypt(iv, plaintext.encode("utf-8"), aad), iv, aad)


def open_field(dek: bytes, sealed: SealedField, *, tenant: str, table: str, column: str, record: str,
               key_version: int, fmt: str = FORMAT) -> str:
    """Decrypt with the AAD rebuilt from the row being read: a field moved from another row,
    column or tenant does not authenticate, whatever AAD was stored next to it."""
    expected = field_aad(tenant=tenant, table=table, column=column, record=record, key_version=key_version, fmt=fmt)
    try:
        return AESGCM(dek).decrypt(sealed.iv, sealed.ct, expected).decode("utf-8")
    except InvalidTag:
        raise UserError(f"{table}.{column} of record {record} does not authenticate in its context "
                        "(moved, altered, or another key)") from None
