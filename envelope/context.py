"""Encryption contexts: what a ciphertext or a wrapped key is bound to.

Field AAD binds tenant, table, column, record id and key version, so a ciphertext moved to
another row, column or tenant fails to decrypt. The decryptor rebuilds the AAD from the row
it reads; the stored AAD is only a record of it. The DEK wrap binds tenant, table and key
version (a cached DEK serves several records of one tenant, as in the AWS Encryption SDK).
"""

from __future__ import annotations

FORMAT = "ztm-envelope-v1"


def _canonical(parts: dict[str, str | int]) -> bytes:
    for key, value in parts.items():
        if any(c in str(value) for c in ";="):
            raise ValueError(f"context value for {key} must not contain ';' or '='")
    return (FORMAT + ";" + ";".join(f"{k}={v}" for k, v in parts.items())).encode()


def field_aad(*, tenant: str, table: str, column: str, record: str, key_version: int) -> bytes:
    return _canonical({"tenant": tenant, "table": table, "column": column, "record": record, "kv": key_version})


def wrap_context(*, tenant: str, table: str, key_version: int) -> bytes:
    return _canonical({"purpose": "dek", "tenant": tenant, "table": table, "kv": key_version})


PQ_PRIVATE_KEY_CONTEXT = _canonical({"purpose": "pq-organisation-private-key"})


def aad_key_version(aad: bytes) -> int | None:
    """The key version a field was sealed under, read from its stored AAD. (It may be older
    than the row's current KEK version: a KEK rotation re-wraps the DEK, not the fields.)"""
    try:
        parts = dict(p.split("=", 1) for p in aad.decode().split(";")[1:])
        return int(parts["kv"])
    except (UnicodeDecodeError, ValueError, KeyError):
        return None
