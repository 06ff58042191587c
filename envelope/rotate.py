"""KEK rotation: re-wrap every DEK of a tenant under a newer KEK version, through the API.

Field ciphertext is untouched (only pii_wrapped_key, pii_kms_key_id, pii_key_version
change; a v2 record keeps its salt and gets its branch key's new wrap, so its DEK stays);
each re-wrap is one committed, audited call of app_rewrap_user_key, and records
already at the target version are skipped, so a run that is interrupted (killed, Ctrl-C,
a lost connection) is resumed by running it again. Records are read in pages in user_id
order, so memory stays constant for large tenants.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from envelope import branch
from envelope.client import TABLE, EnvelopeClient
from envelope.context import branch_context, wrap_context
from envelope.kms.base import WrappedKey

PAGE = 500
MAX_REMEMBERED = 10_000  # re-wrapped DEKs kept to serve the other records that share them


@dataclass
class RewrapCounts:
    rewrapped: int = 0
    already_current: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    kms_calls: int = 0

    @property
    def seen(self) -> int:
        return self.rewrapped + self.already_current + len(self.failed)


def _pages(conn: pymysql.connections.Connection):
    last = ""
    while True:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT user_id, pii_wrapped_key, pii_kms_key_id, pii_key_version FROM v_users "
                        "WHERE user_id > %s ORDER BY user_id LIMIT %s", (last, PAGE))
            rows = cur.fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1]["user_id"]


def rewrap_tenant(conn: pymysql.connections.Connection, client: EnvelopeClient, tenant: str, to_version: int,
                  progress: Callable[[RewrapCounts], None] | None = None) -> RewrapCounts:
    """``conn``: an app session with ``tenant`` set (the procedure checks it again).
    ``progress`` is called after each record (the CLI reports every few thousand)."""
    counts, before = RewrapCounts(), client.kms.calls
    rewrapped: dict[tuple[bytes, int], WrappedKey] = {}  # a cached DEK serves many records: re-wrap it once
    for rows in _pages(conn):
        for row in rows:
            version = int(row["pii_key_version"])
            if version >= to_version:
                counts.already_current += 1
            else:
                _rewrap_one(conn, client, tenant, to_version, row, rewrapped, counts)
            counts.kms_calls = client.kms.calls - before
            if progress is not None:
                progress(counts)
        if len(rewrapped) > MAX_REMEMBERED:  # bounded memory; forgetting costs KMS calls, not correctness
            rewrapped.clear()
    return counts


def _rewrap_one(conn, client: EnvelopeClient, tenant: str, to_version: int, row: dict,
                rewrapped: dict[tuple[bytes, int], WrappedKey], counts: RewrapCounts) -> None:
    version, blob = int(row["pii_key_version"]), bytes(row["pii_wrapped_key"])
    try:
        parts = branch.unpack(blob)
        context = wrap_context if parts is None else branch_context
        wrapped = blob if parts is None else parts[1]  # v2: the branch key's wrap, shared by its records
        new = rewrapped.get((wrapped, version))
        if new is None:
            key = client.kms.unwrap(WrappedKey(wrapped, row["pii_kms_key_id"], version),
                                    context(tenant=tenant, table=TABLE, key_version=version))
            new = client.kms.wrap(key, context(tenant=tenant, table=TABLE, key_version=to_version), to_version)
            rewrapped[(wrapped, version)] = new
        stored = new.blob if parts is None else branch.pack(parts[0], new.blob)
        with conn.cursor() as cur:
            cur.execute("CALL app_rewrap_user_key(%s, %s, %s, %s)",
                        (row["user_id"], base64.b64encode(stored).decode(), new.key_id, new.key_version))
        counts.rewrapped += 1
    except Exception as exc:  # one bad record must not stop the rotation; it is reported
        counts.failed[row["user_id"]] = str(exc)[:200]
