#!/usr/bin/env python3
"""ZTM-AUD-4 reconciliation throughput next to the raw fetch rate of the same rows, same run.

A scratch database (ztm_bench_ledger) holds a chain of real-format events and a data table
whose rows equal the replay (N inserts, then one update of every other row), built exactly
as the triggers render images; the lab's own trail is untouched. Reported: rows+events per
second for a plain streamed fetch of the events and the rows, and for `reconcile`.

Usage (root, lab up, project root): .venv/bin/python -m bench.ledger [--rows N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
import uuid
from pathlib import Path

import pymysql
import pymysql.cursors

from bench.results_file import write_results
from provision import lab as lab_mod
from ztm.audit_chain import GENESIS, LANES, link_hash
from ztm.db import connect
from ztm.ledger import reconcile
from ztm.target import load_target

SCRATCH = "ztm_bench_ledger"
TABLE = ("CREATE TABLE {db}.items (item_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, "
         "tenant_id CHAR(36) CHARACTER SET ascii NOT NULL, balance DECIMAL(19,4) NOT NULL, "
         "note VARBINARY(64) NOT NULL, created_at DATETIME(6) NOT NULL) ENGINE = InnoDB")


def _image(item: str, balance: float, note: bytes, created: dt.datetime) -> dict:
    # Balances are binary-exact floats (100.0, 99.5): JSON numbers that equal the DECIMAL column.
    return {"item_id": item, "tenant_id": "02d5c8e2-809c-5d23-b70e-2827c7e1f101", "balance": balance,
            "note": note.hex().upper(), "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%f")}


def build(admin: pymysql.connections.Connection, rows: int, database: str, batch: int = 5000) -> int:
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
        cur.execute(f"CREATE DATABASE {SCRATCH}")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_events LIKE `{database}`.audit_events")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_chain_head LIKE `{database}`.audit_chain_head")
        cur.execute(TABLE.format(db=SCRATCH))
        created = dt.datetime(2026, 12, 1, 12, 0, 0, 123456)
        events: list[tuple] = []
        data: list[tuple] = []
        prev, seq = GENESIS, 0

        def append(op: str, key: str, before: dict | None, after: dict | None) -> None:
            nonlocal prev, seq
            seq += 1
            body = {"table": "items", "op": op, "key": key, "actor": "app_user@10.77.0.1",
                    "at": "2026-12-01T12:00:00.000000Z", "before": before, "after": after}
            payload = f'{{"lane": 0, "seq": {seq}, ' + json.dumps(body)[1:]  # one tenant: one lane
            curr = link_hash(prev, payload)
            events.append((0, seq, payload, prev, curr))
            prev = curr
            if len(events) >= batch:
                cur.executemany(f"INSERT INTO {SCRATCH}.audit_events VALUES (%s, %s, %s, %s, %s)", events)
                events.clear()

        for n in range(rows):
            item, note = str(uuid.UUID(int=n + 1)), n.to_bytes(8, "big")
            first = _image(item, 100.0, note, created)
            append("INSERT", item, None, first)
            final = first
            if n % 2 == 0:
                final = dict(first, balance=99.5)
                append("UPDATE", item, first, final)
            data.append((item, first["tenant_id"], final["balance"], note, created))
            if len(data) >= batch:
                cur.executemany(f"INSERT INTO {SCRATCH}.items VALUES (%s, %s, %s, %s, %s)", data)
                data.clear()
        if events:
            cur.executemany(f"INSERT INTO {SCRATCH}.audit_events VALUES (%s, %s, %s, %s, %s)", events)
        if data:
            cur.executemany(f"INSERT INTO {SCRATCH}.items VALUES (%s, %s, %s, %s, %s)", data)
        cur.executemany(f"INSERT INTO {SCRATCH}.audit_chain_head VALUES (%s, %s, %s)",
                        [(0, seq, prev)] + [(lane, 0, GENESIS) for lane in range(1, LANES)])
    return seq


def raw_fetch_s(admin: pymysql.connections.Connection) -> tuple[int, float]:
    t, n = time.perf_counter(), 0
    for query in (f"SELECT lane, seq, payload, prev_hash, curr_hash FROM {SCRATCH}.audit_events ORDER BY lane, seq",
                  f"SELECT * FROM {SCRATCH}.items"):
        with admin.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(query)
            while chunk := cur.fetchmany(5000):
                n += len(chunk)
    return n, time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    target = load_target(lab.target_file)
    admin = connect(target, target.roles["admin"])
    try:
        events = build(admin, args.rows, target.database)
        fetched, fetch_s = raw_fetch_s(admin)
        t = time.perf_counter()
        report = reconcile(admin, SCRATCH)
        reconcile_s = time.perf_counter() - t
        assert report.equal and report.events == events and report.rows == {"items": args.rows}, report.describe()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
    doc = {"benchmark": "ledger", "engine": target.engine, "server_version": admin.get_server_info(),
           "python": platform.python_version(), "rows": args.rows, "events": events,
           "raw_fetch_per_s": round(fetched / fetch_s), "reconcile_per_s": round(fetched / reconcile_s),
           "raw_fetch_s": round(fetch_s, 2), "reconcile_s": round(reconcile_s, 2),
           "unit": "events + rows read per second"}
    write_results(doc, "ledger", target.engine, args.out, echo=False)
    print(f"AUD-4 reconcile: {doc['reconcile_per_s']:,} rows/s   baseline raw fetch: {doc['raw_fetch_per_s']:,} rows/s"
          f"   ({events:,} events + {args.rows:,} rows, {target.engine})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
