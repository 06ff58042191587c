"""Stored envelope records and the raw content of the target's database, read through the
admin path. Facts only: decrypting them is the envelope client's job (controls do that).

    >>> [r["user_id"] for r in recent_records(admin, "securedb", 2)]
    ['9b7…', '41c…']
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql

from ztm.resources.schema_objects import SchemaObjects


@dataclass(frozen=True)
class SentinelRecord:
    """A record the assessment wrote itself, with the plaintext it holds."""
    pii: dict[str, str] = field(repr=False)  # kept out of failure reports (they go into the bundle)
    user_id: str
    tenant: str


def recent_records(admin: pymysql.connections.Connection, database: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of the users table, every column."""
    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM `{database}`.users ORDER BY created_at DESC LIMIT %s", (limit,))
        return list(cur.fetchall())


def record(admin: pymysql.connections.Connection, database: str, user_id: str) -> dict[str, Any] | None:
    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM `{database}`.users WHERE user_id = %s", (user_id,))
        return cur.fetchone()


def pq_coverage(admin: pymysql.connections.Connection, database: str) -> list[tuple[str, str | None, int | None]]:
    """(user_id, pq_alg, length of the post-quantum wrap) of every record, oldest first."""
    with admin.cursor() as cur:
        cur.execute(f"SELECT user_id, pq_alg, LENGTH(pii_pq_wrapped_key) FROM `{database}`.users ORDER BY created_at")
        return list(cur.fetchall())


def dek_kek_ids(admin: pymysql.connections.Connection, database: str) -> set[str]:
    """The KMS key ids the stored data keys are wrapped under."""
    with admin.cursor() as cur:
        cur.execute(f"SELECT DISTINCT pii_kms_key_id FROM `{database}`.users")
        return {k for (k,) in cur.fetchall()}


def pq_sample(admin: pymysql.connections.Connection, database: str, newest: int,
              random_older: int) -> list[dict[str, Any]]:
    """Records with a post-quantum wrap: the ``newest`` ones plus ``random_older`` picked at random."""
    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT user_id FROM `{database}`.users WHERE pii_pq_wrapped_key IS NOT NULL "
                    "ORDER BY created_at DESC, user_id")
        ids = [r["user_id"] for r in cur.fetchall()]
        older = ids[newest:]
        picked = ids[:newest] + random.sample(older, min(random_older, len(older)))
        if not picked:
            return []
        cur.execute(f"SELECT * FROM `{database}`.users WHERE user_id IN ({', '.join(['%s'] * len(picked))})", picked)
        return list(cur.fetchall())


def table_rows(admin: pymysql.connections.Connection, database: str) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    """Every row of every base table as (table, row key, column -> bytes), streamed (the audit
    table can be large); the row key names the row by its primary key, never by its content."""
    for table, key_columns in SchemaObjects(admin, database).primary_keys.items():
        with admin.cursor(pymysql.cursors.SSDictCursor) as cur:
            cur.execute(f"SELECT * FROM `{database}`.`{table}`")  # names from information_schema
            for row in cur:
                key = ", ".join(f"{k}={row[k]}" for k in key_columns) or "no primary key"
                yield table, key, {column: value if isinstance(value, (bytes, bytearray)) else str(value).encode()
                                   for column, value in row.items()}
