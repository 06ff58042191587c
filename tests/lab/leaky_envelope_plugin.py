"""A pytest plugin that breaks the envelope client on purpose, for sensitivity tests only:
loaded into a control run with ``-p tests.lab.leaky_envelope_plugin``, it makes the client
"seal" a field by storing its UTF-8 bytes as they are (a client library regression that
writes plaintext PII while everything else, KMS wrap included, still looks right)."""

from __future__ import annotations

import os

import envelope.client
from envelope.context import FORMAT, field_aad
from envelope.record import IV_BYTES, SealedField


def _store_plaintext(dek: bytes, plaintext: str, *, tenant: str, table: str, column: str, record: str,
                     key_version: int, fmt: str = FORMAT) -> SealedField:
    aad = field_aad(tenant=tenant, table=table, column=column, record=record, key_version=key_version, fmt=fmt)
    return SealedField(plaintext.encode("utf-8"), os.urandom(IV_BYTES), aad)


envelope.client.seal = _store_plaintext
