"""Branch keys (format ztm-envelope-v2), after the AWS Encryption SDK's hierarchical keyring:
one key-derivation key per tenant (the branch key) is wrapped by the KMS and unwrapped once
per cache lifetime; every record gets its own DEK, derived with HKDF-SHA256 from the branch
key, a random 32-byte salt of its own and its tenant, table and record id. One KMS call per
tenant, and no DEK serves two records.

Stored in ``pii_wrapped_key`` (documented so others can decrypt without this code):
``MAGIC (8 bytes) || salt (32 bytes) || the KMS wrap of the branch key``. The KMS wrap is bound
to ``context.branch_context``; the post-quantum wrap (``pii_pq_wrapped_key``) is an HPKE wrap
of the same branch key in the same context, so break-glass recovery needs only it and the
salt. A KEK rotation re-wraps the branch key and keeps the salt.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from envelope.context import record_dek_info
from ztm.errors import UserError

MAGIC = b"ztmbk2\x00\x00"
SALT_BYTES = 32
BRANCH_KEY_BYTES = 32
DEK_BYTES = 32


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def pack(salt: bytes, wrapped_branch_key: bytes) -> bytes:
    return MAGIC + salt + wrapped_branch_key


def unpack(blob: bytes) -> tuple[bytes, bytes] | None:
    """(salt, KMS wrap of the branch key) of a v2 ``pii_wrapped_key``; None for a v1 wrapped DEK."""
    if not blob.startswith(MAGIC):
        return None
    if len(blob) <= len(MAGIC) + SALT_BYTES:
        raise UserError("a branch-key wrapped key is truncated (no wrap after its salt)")
    return blob[len(MAGIC):len(MAGIC) + SALT_BYTES], blob[len(MAGIC) + SALT_BYTES:]


def derive_dek(branch_key: bytes, salt: bytes, *, tenant: str, table: str, record: str) -> bytes:
    if len(branch_key) != BRANCH_KEY_BYTES or len(salt) != SALT_BYTES:
        raise UserError("a branch key or record salt has the wrong length")
    return HKDF(hashes.SHA256(), DEK_BYTES, salt, record_dek_info(tenant=tenant, table=table, record=record)
                ).derive(branch_key)
