"""Encryption contexts: what a ciphertext or a wrapped key is bound to.

Field AAD binds tenant, table, column, record id and key version, so a ciphertext moved to
another row, column or tenant fails to decrypt. The decryptor rebuilds the AAD from the row
it reads; the stored AAD is only a record of it, read for its header (format and key
version, both authenticated since they are part of the AAD).

Two record shapes: ``ztm-envelope-v1`` (a DEK wrapped by the KMS, bound to tenant, table and
key version; a cached DEK served several records) and ``ztm-envelope-v2`` (a per-tenant
branch key wrapped by the KMS in ``branch_context``, each record's own DEK derived from it,
see envelope.branch). Both decrypt; new records are v2.

Serialization (documented so others can decrypt without this code):
``<format>;k1=v1;k2=v2...`` in the order below, UTF-8, values without ';' or '='.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT_V1 = "ztm-envelope-v1"
FORMAT = FORMAT_V1  # the AAD format of a record without a branch key (the default of field_aad)
FORMAT_V2 = "ztm-envelope-v2"
KNOWN_FORMATS = (FORMAT_V1, FORMAT_V2)  # a new format is added here; old records keep their header and decrypt


@dataclass(frozen=True)
class Header:
    format: str
    key_version: int


def _canonical(parts: dict[str, str | int], fmt: str = FORMAT) -> bytes:
    for key, value in parts.items():
        if any(c in str(value) for c in ";="):
            raise ValueError(f"context value for {key} must not contain ';' or '='")
    return (fmt + ";" + ";".join(f"{k}={v}" for k, v in parts.items())).encode()


def field_aad(*, tenant: str, table: str, column: str, record: str, key_version: int, fmt: str = FORMAT) -> bytes:
    return _canonical({"tenant": tenant, "table": table, "column": column, "record": record, "kv": key_version}, fmt)


def wrap_context(*, tenant: str, table: str, key_version: int) -> bytes:
    return _canonical({"purpose": "dek", "tenant": tenant, "table": table, "kv": key_version})


def branch_context(*, tenant: str, table: str, key_version: int) -> bytes:
    """What a branch key's KMS (and PQ) wrap is bound to: another purpose than a v1 DEK's, so
    neither wrap opens as the other."""
    return _canonical({"purpose": "branch-key", "tenant": tenant, "table": table, "kv": key_version}, FORMAT_V2)


def record_dek_info(*, tenant: str, table: str, record: str) -> bytes:
    """The HKDF info of a record's DEK: the DEK is bound to its tenant, table and record."""
    return _canonical({"purpose": "record-dek", "tenant": tenant, "table": table, "record": record}, FORMAT_V2)


PQ_PRIVATE_KEY_CONTEXT = _canonical({"purpose": "pq-organisation-private-key"})


def parse_header(aad: bytes) -> Header | None:
    """The format and key version a field was sealed under, from its stored AAD; None if it
    carries no header this client knows. (The key version may be older than the row's
    current KEK version: a KEK rotation re-wraps the DEK, not the fields.)"""
    try:
        fmt, *rest = aad.decode().split(";")
        parts = dict(p.split("=", 1) for p in rest)
        version = int(parts["kv"])
    except (UnicodeDecodeError, ValueError, KeyError):
        return None
    return Header(fmt, version) if fmt in KNOWN_FORMATS and version >= 1 else None

