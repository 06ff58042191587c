"""Bulk load: encrypted records sent in batches to ``app_create_users_encrypted``, one call
(and one transaction, each row audited by the triggers) per batch: a batch is stored whole
or not at all. Documents are encrypted by the caller (EnvelopeClient.encrypt_user)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import pymysql

BATCH = 500  # records per call: well inside the server's max_allowed_packet (about 1.5 kB a record)
MAX_BATCH = 10_000  # the procedure's own limit


def batches(docs: Iterable[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} records, not {size}")
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def insert_batch(conn: pymysql.connections.Connection, docs: list[dict[str, Any]]) -> int:
    """One call of the bulk procedure on an app session with its tenant set; the number stored.
    Under autocommit the procedure commits its own transaction; inside the caller's it does not."""
    payload = json.dumps(docs, separators=(",", ":")).encode()
    # Sent as a hex literal: pymysql escapes a str in pure Python (about 0.1 s per MB, more than
    # the server takes to store the batch), bytes.hex() runs in C, and hex digits need no escaping.
    with conn.cursor() as cur:
        cur.execute(f"CALL app_create_users_encrypted(CONVERT(X'{payload.hex()}' USING utf8mb4))")
        (inserted,) = cur.fetchone()
        while cur.nextset():
            pass
    return int(inserted)


def import_records(conn: pymysql.connections.Connection, docs: Iterable[dict[str, Any]], *, size: int = BATCH,
                   progress: Callable[[int], None] | None = None) -> int:
    """Every document in batches of ``size``; ``progress(n)`` after each batch of n stored.
    A refused batch raises (pymysql.MySQLError): the batches before it stay stored."""
    total = 0
    for batch in batches(docs, size):
        stored = insert_batch(conn, batch)
        total += stored
        if progress is not None:
            progress(stored)
    return total
