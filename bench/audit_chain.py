#!/usr/bin/env python3
"""Audit chain benchmarks on the lab; writes JSON (default bench/results/audit_chain-<engine>.json).

1. Verify throughput over N events (default 1,000,000, spread over 16 of the 64 lanes as a
   multi-tenant trail would be) next to the raw row-fetch rate and
   the raw hashlib rate on the same rows; then, per driver (pymysql, and mysqlclient when
   installed), its raw fetch of the bytes rows next to the fast verifier, serial and
   segment-parallel (one process per core), all in the same run. The events are synthetic but chained exactly as
   the triggers chain them, in a scratch database (ztm_bench) so the lab's trail is untouched.
2. Audited vs unaudited write throughput of app_transfer with 1, 8 and 32 writers, each
   writer in its own tenant (the lanes are per tenant: writers of tenants in different lanes
   never wait for each other's head row); and, audited, all writers in the two assessment
   tenants (at most two lanes: what a one-chain trail was for everyone). The unaudited run
   drops the accounts audit triggers for its duration, opens its own accounts, deletes them
   again before the data plane is re-applied (so the lab's data still equals its trail).

Usage (root, lab up, project root): .venv/bin/python -m bench.audit_chain [--events N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymysql
import pymysql.cursors

from bench.results_file import write_results
from envelope.setup import client_for
from provision import lab as lab_mod
from provision import schema
from provision.netns import ACCOUNT_HOST
from tests.lab.fake_records import load_tenants, writer_accounts
from ztm.audit_chain import GENESIS, LANES, lane_of, link_hash, stream_trail, verify_database, verify_lanes
from ztm.db import connect, connect_c
from ztm.target import load_target

SCRATCH = "ztm_bench"


SCRATCH_LANES = 16


def build_scratch_chain(admin: pymysql.connections.Connection, events: int, batch: int = 5000) -> None:
    """``events`` chained exactly as the triggers chain them, over SCRATCH_LANES lanes."""
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
        cur.execute(f"CREATE DATABASE {SCRATCH}")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_events LIKE securedb.audit_events")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_chain_head LIKE securedb.audit_chain_head")
        heads = {lane: (0, GENESIS) for lane in range(LANES)}
        per_lane = -(-events // SCRATCH_LANES)
        rows, made = [], 0
        for lane in range(SCRATCH_LANES):
            prev = GENESIS
            for seq in range(1, min(per_lane, events - made) + 1):
                body = {"table": "accounts", "op": "UPDATE", "key": str(uuid.UUID(int=seq)),
                        "actor": "app_user@10.77.0.1", "at": "2026-11-22T00:00:00.000000Z",
                        "before": {"balance": seq}, "after": {"balance": seq + 1}}
                payload = f'{{"lane": {lane}, "seq": {seq}, ' + json.dumps(body)[1:]
                curr = link_hash(prev, payload)
                rows.append((lane, seq, payload, prev, curr))
                prev, made = curr, made + 1
                heads[lane] = (seq, curr)
                if len(rows) == batch:
                    cur.executemany(f"INSERT INTO {SCRATCH}.audit_events VALUES (%s, %s, %s, %s, %s)", rows)
                    rows = []
        if rows:
            cur.executemany(f"INSERT INTO {SCRATCH}.audit_events VALUES (%s, %s, %s, %s, %s)", rows)
        cur.executemany(f"INSERT INTO {SCRATCH}.audit_chain_head (lane, seq, head_hash) VALUES (%s, %s, %s)",
                        [(lane, seq, h) for lane, (seq, h) in heads.items()])


def stream(admin, query: str):
    with admin.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(query)
        while chunk := cur.fetchmany(5000):
            yield from chunk


def _rate(events: int, seconds: float) -> int:
    return round(events / seconds)


def measure_verify(admin, events: int) -> dict[str, float]:
    """pymysql (str rows, the old serial verifier) next to its raw fetch; then each driver's
    raw fetch of the bytes rows next to the fast verifier, serial and segment-parallel."""
    query = f"SELECT lane, seq, payload, prev_hash, curr_hash FROM {SCRATCH}.audit_events ORDER BY lane, seq"
    t = time.perf_counter()
    fetched = sum(1 for _ in stream(admin, query))
    fetch_s = time.perf_counter() - t
    t = time.perf_counter()
    hashed = 0
    for _, _, payload, prev, _ in stream(admin, query):
        hashlib.sha256((prev + payload).encode()).hexdigest()
        hashed += 1
    hash_s = time.perf_counter() - t
    t = time.perf_counter()
    report = verify_lanes(stream(admin, query))
    verify_s = time.perf_counter() - t
    assert fetched == hashed == events and report.intact and report.checked == events, report.describe()
    result: dict[str, object] = {
        "events": events, "fetch_rows_per_s": _rate(events, fetch_s),
        "fetch_plus_hashlib_rows_per_s": _rate(events, hash_s), "verify_rows_per_s": _rate(events, verify_s),
        "fetch_s": round(fetch_s, 2), "fetch_plus_hashlib_s": round(hash_s, 2), "verify_s": round(verify_s, 2)}
    result["drivers"] = measure_drivers(events)
    return result


def measure_drivers(events: int) -> dict[str, dict[str, object]]:
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    target = load_target(lab.target_file)
    admin = target.roles["admin"]
    openers = {"pymysql": lambda: connect(target, admin)}
    if connect_c(target, admin) is not None:
        openers["mysqlclient"] = lambda: connect_c(target, admin)
    workers = os.cpu_count() or 1
    found: dict[str, dict[str, object]] = {}
    for name, opener in openers.items():
        conn = opener()
        try:
            t = time.perf_counter()
            fetched = sum(1 for _ in stream_trail(conn, database=SCRATCH))
            fetch_s = time.perf_counter() - t
            t = time.perf_counter()
            serial = verify_database(conn, database=SCRATCH)
            serial_s = time.perf_counter() - t
            t = time.perf_counter()
            parallel = verify_database(conn, database=SCRATCH, connect=opener, workers=workers, min_segment_rows=1)
            parallel_s = time.perf_counter() - t
        finally:
            conn.close()
        assert fetched == events and serial.intact and parallel.intact, (serial.describe(), parallel.describe())
        assert serial.to_dict() == parallel.to_dict(), "the segmented verdict differs from the serial one"
        found[name] = {"raw_fetch_rows_per_s": _rate(events, fetch_s), "verify_serial_rows_per_s":
                       _rate(events, serial_s), "verify_segments_rows_per_s": _rate(events, parallel_s),
                       "workers": workers, "segments_vs_raw_fetch": round(fetch_s / parallel_s, 2)}
    return found


def server_cpu_s(lab) -> float:
    """CPU seconds (user + system) the lab's database server has used so far (/proc)."""
    pid = int((lab.target_file.parent / "db" / "run" / "mysqld.pid").read_text().strip())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, dict[str, float]] = {}  # mode -> writers -> server / client CPU ms per call


def transfers_per_second(target, writers: int, calls: int, tenants: list[str], lab=None, mode: str = "") -> float:
    """Writer i works in tenants[i % len(tenants)]. With ``lab``, the server's and this
    process's CPU time per call during the run go to CPU[mode]."""
    barrier = threading.Barrier(writers + 1)
    envelope = client_for(target)

    def writer(index: int) -> None:
        conn = connect(target, target.roles["app"], database=target.database)
        with conn.cursor() as cur:
            accounts = writer_accounts(cur, envelope, tenants[index % len(tenants)])
            barrier.wait()
            for call in range(calls):
                source, dest = accounts if call % 2 == 0 else accounts[::-1]
                cur.execute("CALL app_transfer(%s, %s, 1)", (source, dest))
        conn.close()

    with ThreadPoolExecutor(max_workers=writers) as pool:
        futures = [pool.submit(writer, i) for i in range(writers)]
        barrier.wait()
        t, server0, client0 = time.perf_counter(), server_cpu_s(lab) if lab else 0.0, time.process_time()
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t
        if lab:
            CPU.setdefault(mode, {})[str(writers)] = {
                "server_cpu_ms_per_call": round(1000 * (server_cpu_s(lab) - server0) / (writers * calls), 3),
                "client_cpu_ms_per_call": round(1000 * (time.process_time() - client0) / (writers * calls), 3)}
    return writers * calls / elapsed


WRITERS = (1, 8, 32)


def measure_writes(lab, target, calls: int) -> dict[str, object]:
    two = target.raw["tenants"]["granted"]
    with lab.admin() as conn:
        own = two + load_tenants(conn, target.roles["app"].user, max(WRITERS) - len(two), target.database)
    results: dict[str, object] = {"audited": {}, "unaudited": {}, "audited_two_tenants": {},
                                  "lanes_used": {str(w): len({lane_of(t) for t in own[:w]}) for w in WRITERS},
                                  "lanes_used_two_tenants": len({lane_of(t) for t in two})}
    for writers in WRITERS:
        results["audited"][str(writers)] = round(transfers_per_second(target, writers, calls, own, lab, "audited"), 1)
        results["audited_two_tenants"][str(writers)] = round(
            transfers_per_second(target, writers, calls, two, lab, "audited_two_tenants"), 1)
    # The anchor is paused: unaudited writes and the re-applied triggers are not tampering to record.
    lab_mod.anchor_down(lab)
    try:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT account_id FROM securedb.accounts")
            before = {r[0] for r in cur.fetchall()}
            for op in ("insert", "update", "delete"):
                cur.execute(f"DROP TRIGGER securedb.accounts_audit_{op}")
        try:
            for writers in WRITERS:
                results["unaudited"][str(writers)] = round(
                    transfers_per_second(target, writers, calls, own, lab, "unaudited"), 1)
        finally:
            with lab.admin() as conn:
                with conn.cursor() as cur:  # the accounts opened unaudited go again: data = trail (AUD-4)
                    cur.execute("SELECT account_id FROM securedb.accounts")
                    added = [(r[0],) for r in cur.fetchall() if r[0] not in before]
                    cur.executemany("DELETE FROM securedb.accounts WHERE account_id = %s", added)
                conn.commit()
                schema.apply(conn, account_host=ACCOUNT_HOST)
    finally:
        lab_mod.anchor_up(lab)
    results["cpu_ms_per_call"] = CPU
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200, help="transfers per writer in the write benchmark")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-writes", action="store_true", help="only the verify benchmark")
    args = parser.parse_args()
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    target = load_target(lab.target_file)
    admin = connect(target, target.roles["admin"])
    t = time.perf_counter()
    build_scratch_chain(admin, args.events)
    build_s = time.perf_counter() - t
    verify = measure_verify(admin, args.events)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {SCRATCH}")
    writes = None if args.no_writes else measure_writes(lab, target, args.calls)
    doc = {"benchmark": "audit_chain", "engine": target.engine, "server_version": admin.get_server_info(),
           "python": platform.python_version(), "machine": platform.machine(), "build_scratch_chain_s":
           round(build_s, 1), "verify": verify, "transfers_per_s": writes,
           "transfer_calls_per_writer": args.calls, "note": "a transfer updates two rows: two audit events"}
    write_results(doc, "audit_chain", target.engine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
