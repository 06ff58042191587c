"""The envelope client: PII in, the API's JSON document out (and back), all in the client.

``encrypt_user`` produces exactly the document ``app_create_user_encrypted`` takes;
``decrypt_user`` reads a row of ``v_users`` back into plaintext through the KMS.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from envelope import pq
from envelope.cache import CachedKey, DekCache
from envelope.context import parse_header, wrap_context
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

    def _data_key(self, tenant: str, size: int) -> CachedKey:
        version = self.kms.current_version
        cached = self.cache.take(tenant, version, size)
        if cached is not None:
            return cached
        dek = new_dek()
        context = wrap_context(tenant=tenant, table=TABLE, key_version=version)
        wrapped = self.kms.wrap(dek, context, version)
        pq_blob = pq.wrap(dek, self.pq_public, context) if self.pq_public else None
        entry = CachedKey(dek, wrapped, pq_blob)
        self.cache.put(tenant, version, entry, size)
        return entry

    def encrypt_user(self, tenant: str, pii: dict[str, str], role: str = "user",
                     user_id: str | None = None) -> dict[str, Any]:
        missing = [f for f in PII_FIELDS if f not in pii]
        if missing:
            raise UserError(f"missing PII fields: {', '.join(missing)}")
        user_id = user_id or str(uuid.uuid4())
        key = self._data_key(tenant, sum(len(v.encode()) for v in pii.values()))
        doc: dict[str, Any] = {"user_id": user_id, "tenant_id": tenant, "role": role,
                               "pii_wrapped_key": _b64(key.wrapped.blob), "pii_kms_key_id": key.wrapped.key_id,
                               "pii_key_version": key.wrapped.key_version}
        for name in PII_FIELDS:
            sealed = seal(key.dek, pii[name], tenant=tenant, table=TABLE, column=name, record=user_id,
                          key_version=key.wrapped.key_version)
            doc[name] = {"ct": _b64(sealed.ct), "iv": _b64(sealed.iv), "aad": _b64(sealed.aad)}
        if key.pq_wrapped is not None:
            doc["pii_pq_wrapped_key"], doc["pq_alg"] = _b64(key.pq_wrapped), pq.PQ_ALG
        return doc

    def unwrap_dek(self, row: dict[str, Any]) -> bytes:
        """The record's DEK through the KMS, in the record's own context (tenant, table, version)."""
        version = int(row["pii_key_version"])
        context = wrap_context(tenant=row["tenant_id"], table=TABLE, key_version=version)
        return self.kms.unwrap(WrappedKey(bytes(row["pii_wrapped_key"]), row["pii_kms_key_id"], version), context)

    def decrypt_user(self, row: dict[str, Any]) -> dict[str, str]:
        """``row``: a v_users row as a dict (bytes columns as returned by the driver)."""
        return open_fields(self.unwrap_dek(row), row)

    @staticmethod
    def recover_with_pq(row: dict[str, Any], pq_private: bytes) -> dict[str, str]:
        """Break-glass: the DEK from the post-quantum wrap alone, not the KMS wrap."""
        return open_fields(pq_dek(row, pq_private), row)


def pq_dek(row: dict[str, Any], pq_private: bytes) -> bytes:
    """Decapsulate the record's PQ wrap with the organisation private key. The wrap is bound
    to the key version the record was first sealed under (a KEK rotation re-wraps the KMS
    wrap only), which the fields' authenticated header carries."""
    if not row.get("pii_pq_wrapped_key"):
        raise UserError(f"record {row['user_id']} carries no post-quantum wrap")
    if row.get("pq_alg") != pq.PQ_ALG:
        raise UserError(f"record {row['user_id']} names PQ suite {row.get('pq_alg')!r}, not {pq.PQ_ALG}")
    header = parse_header(bytes(row["name_aad"]))
    if header is None:
        raise UserError(f"users.name of record {row['user_id']} has no valid envelope header")
    context = wrap_context(tenant=row["tenant_id"], table=TABLE, key_version=header.key_version)
    return pq.unwrap(bytes(row["pii_pq_wrapped_key"]), pq_private, context)


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
