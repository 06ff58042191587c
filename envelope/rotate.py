"""KEK rotation: re-wrap every DEK of a tenant under a newer KEK version, through the API.

Field ciphertext is untouched (only pii_wrapped_key, pii_kms_key_id, pii_key_version
change); records already at the target version are skipped, so an interrupted run is
resumed by running it again; every re-wrap is an audited UPDATE.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pymysql

from envelope.client import TABLE, EnvelopeClient
from envelope.context import wrap_context
from envelope.kms.base import WrappedKey


@dataclass
class RewrapCounts:
    rewrapped: int = 0
    already_current: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    kms_calls: int = 0


def rewrap_tenant(conn: pymysql.connections.Connection, client: EnvelopeClient, tenant: str,
                  to_version: int) -> RewrapCounts:
    """``conn``: an app session with ``tenant`` set (the procedure checks it again)."""
    counts, before = RewrapCounts(), client.kms.calls
    rewrapped: dict[tuple[bytes, int], WrappedKey] = {}  # a cached DEK serves many records: re-wrap it once
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT user_id, tenant_id, pii_wrapped_key, pii_kms_key_id, pii_key_version FROM v_users")
        rows = cur.fetchall()
    for row in rows:
        version = int(row["pii_key_version"])
        if version >= to_version:
            counts.already_current += 1
            continue
        blob = bytes(row["pii_wrapped_key"])
        try:
            new = rewrapped.get((blob, version))
            if new is None:
                dek = client.kms.unwrap(WrappedKey(blob, row["pii_kms_key_id"], version),
                                        wrap_context(tenant=tenant, table=TABLE, key_version=version))
                new = client.kms.wrap(dek, wrap_context(tenant=tenant, table=TABLE, key_version=to_version),
                                      to_version)
                rewrapped[(blob, version)] = new
            with conn.cursor() as cur:
                cur.execute("CALL app_rewrap_user_key(%s, %s, %s, %s)",
                            (row["user_id"], base64.b64encode(new.blob).decode(), new.key_id, new.key_version))
            counts.rewrapped += 1
        except Exception as exc:  # one bad record must not stop the rotation; it is reported
            counts.failed[row["user_id"]] = str(exc)[:200]
    counts.kms_calls = client.kms.calls - before
    return counts
