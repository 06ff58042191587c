"""The envelope client: PII in, the API's JSON document out (and back), all in the client.

``encrypt_user`` produces exactly the document ``app_create_user_encrypted`` takes;
``decrypt_user`` reads a row of ``v_users`` back into plaintext through the KMS.
New records are format v2 (a per-record DEK derived from the tenant's branch key, see
envelope.branch); ``legacy_v1=True`` writes the old shape (a cached, KMS-wrapped DEK), and
both shapes decrypt.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from envelope import branch, pq
from envelope.cache import CachedKey, DekCache
from envelope.context import FORMAT_V1, FORMAT_V2, branch_context, parse_header, wrap_context
from envelope.kms.base import Kms, WrappedKey
from envelope.record import SealedField, new_dek, open_field, seal
from ztm.errors import UserError

TABLE = "users"
PII_FIELDS = ("name", "email", "phone")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class EnvelopeClient:
    kms: Kms
    pq_public: pq.PqPublicKey | None = None
    cache: DekCache = field(default_factory=DekCache)
    legacy_v1: bool = False  # write format v1 records (kept for compatibility tests and old readers)

    def _branch_key(self, tenant: str) -> CachedKey:
        """The tenant's branch key: from the cache, else a new one wrapped by the KMS (and the
        PQ public key): one KMS call per tenant and cache lifetime."""
        version = self.kms.current_version
        cached = self.cache.take("branch-key/" + tenant, version, 0, limit_uses=False)
        if cached is not None:
            return cached
        entry = self._new_wrapped(branch_context(tenant=tenant, table=TABLE, key_version=version), version)
        self.cache.put("branch-key/" + tenant, version, entry, 0)
        return entry

    def _data_key(self, tenant: str, size: int) -> CachedKey:
        version = self.kms.current_version
        cached = self.cache.take(tenant, version, size)
        if cached is not None:
            return cached
        entry = self._new_wrapped(wrap_context(tenant=tenant, table=TABLE, key_version=version), version)
        self.cache.put(tenant, version, entry, size)
        return entry

    def _new_wrapped(self, context: bytes, version: int) -> CachedKey:
        """A fresh key, wrapped by the KMS (one call) and, when configured, by the PQ public key."""
        key = new_dek()
        pq_blob = pq.wrap(key, self.pq_public, context) if self.pq_public else None
        return CachedKey(key, self.kms.wrap(key, context, version), pq_blob)

    def encrypt_user(self, tenant: str, pii: dict[str, str], role: str = "user",
                     user_id: str | None = None) -> dict[str, Any]:
        missing = [f for f in PII_FIELDS if f not in pii]
        if missing:
            raise UserError(f"missing PII fields: {', '.join(missing)}")
        user_id = user_id or str(uuid.uuid4())
        if self.legacy_v1:
            key = self._data_key(tenant, sum(len(v.encode()) for v in pii.values()))
            dek, stored, fmt = key.dek, key.wrapped.blob, FORMAT_V1
        else:
            key = self._branch_key(tenant)
            salt = branch.new_salt()
            dek = branch.derive_dek(key.dek, salt, tenant=tenant, table=TABLE, record=user_id)
            stored, fmt = branch.pack(salt, key.wrapped.blob), FORMAT_V2
        doc: dict[str, Any] = {"user_id": user_id, "tenant_id": tenant, "role": role,
                               "pii_wrapped_key": _b64(stored), "pii_kms_key_id": key.wrapped.key_id,
                               "pii_key_version": key.wrapped.key_version}
        for name in PII_FIELDS:
            sealed = seal(dek, pii[name], tenant=tenant, table=TABLE, column=name, record=user_id,
                          key_version=key.wrapped.key_version, fmt=fmt)
            doc[name] = {"ct": _b64(sealed.ct), "iv": _b64(sealed.iv), "aad": _b64(sealed.aad)}
        if key.pq_wrapped is not None:
            doc["pii_pq_wrapped_key"], doc["pq_alg"] = _b64(key.pq_wrapped), pq.PQ_ALG
        return doc

    def unwrap_dek(self, row: dict[str, Any]) -> bytes:
        """The record's DEK through the KMS, in the record's own context (tenant, table, version):
        v2, the branch key unwrapped and the record's DEK derived from it; v1, the DEK itself."""
        version, tenant = int(row["pii_key_version"]), row["tenant_id"]
        blob = bytes(row["pii_wrapped_key"])
        parts = branch.unpack(blob)
        if parts is None:
            context = wrap_context(tenant=tenant, table=TABLE, key_version=version)
            return self.kms.unwrap(WrappedKey(blob, row["pii_kms_key_id"], version), context)
        salt, wrapped = parts
        key = self.kms.unwrap(WrappedKey(wrapped, row["pii_kms_key_id"], version),
                              branch_context(tenant=tenant, table=TABLE, key_version=version))
        return branch.derive_dek(key, salt, tenant=tenant, table=TABLE, record=row["user_id"])

    def decrypt_user(self, row: dict[str, Any]) -> dict[str, str]:
        """``row``: a v_users row as a dict (bytes columns as returned by the driver)."""
        return open_fields(self.unwrap_dek(row), row)

    @staticmethod
    def recover_with_pq(row: dict[str, Any], pq_private: bytes) -> dict[str, str]:
        """Break-glass: the DEK from the post-quantum wrap alone, not the KMS wrap."""
        return open_fields(pq_dek(row, pq_private), row)


def pq_dek(row: dict[str, Any], pq_private: bytes) -> bytes:
    """Decapsulate the record's PQ wrap with the organisation private key (v2: of its branch
    key, from which the record's DEK is derived with the salt stored in the row). The wrap is bound
    to the key version the record was first sealed under (a KEK rotation re-wraps the KMS
    wrap only), which the fields' authenticated header carries."""
    if not row.get("pii_pq_wrapped_key"):
        raise UserError(f"record {row['user_id']} carries no post-quantum wrap")
    if row.get("pq_alg") != pq.PQ_ALG:
        raise UserError(f"record {row['user_id']} names PQ suite {row.get('pq_alg')!r}, not {pq.PQ_ALG}")
    header = parse_header(bytes(row["name_aad"]))
    if header is None:
        raise UserError(f"users.name of record {row['user_id']} has no valid envelope header")
    parts = branch.unpack(bytes(row.get("pii_wrapped_key") or b""))  # absent: a v1 record's PQ wrap alone
    if parts is None:
        context = wrap_context(tenant=row["tenant_id"], table=TABLE, key_version=header.key_version)
        return pq.unwrap(bytes(row["pii_pq_wrapped_key"]), pq_private, context)
    key = pq.unwrap(bytes(row["pii_pq_wrapped_key"]), pq_private,
                    branch_context(tenant=row["tenant_id"], table=TABLE, key_version=header.key_version))
    return branch.derive_dek(key, parts[0], tenant=row["tenant_id"], table=TABLE, record=row["user_id"])


def open_fields(dek: bytes, row: dict[str, Any]) -> dict[str, str]:
    """Every PII field of a stored row, opened (see open_column)."""
    return {name: open_column(dek, row, name) for name in PII_FIELDS}


def open_column(dek: bytes, row: dict[str, Any], name: str) -> str:
    """Tenant, table, column and record come from the row being read; the format and key
    version the field was sealed under come from its (authenticated) header, and the version
    may not exceed the row's current one. UserError if it does not open."""
    sealed = SealedField(bytes(row[f"{name}_ct"]), bytes(row[f"{name}_iv"]), bytes(row[f"{name}_aad"]))
    header = parse_header(sealed.aad)
    if header is None or header.key_version > int(row["pii_key_version"]):
        raise UserError(f"users.{name} of record {row['user_id']} has no valid envelope header")
    return open_field(dek, sealed, tenant=row["tenant_id"], table=TABLE, column=name,
                      record=row["user_id"], key_version=header.key_version, fmt=header.format)


def api_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))
