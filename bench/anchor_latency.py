#!/usr/bin/env python3
"""Anchor latency on the lab; writes JSON (default bench/results/anchor_latency-<engine>.json).

The time from a commit to an anchor that covers it (checkpoint seq >= the commit's audit
seq) being present in every sink of the lab target, measured against the lab's own
`ztm anchor run` (interval and N-events trigger as the target sets them):

1. burst: real app transfers (two audit events each) until the head passes the newest
   anchor by N events; measured from the commit of the last one (the N-events trigger).
2. lone write: one transfer at a random moment of the interval, nothing else (the interval
   trigger); repeated --lone times. Expect about half an interval on average.

Sinks are polled every 20 ms. Usage (root, lab up, project root):
    .venv/bin/python -m bench.anchor_latency [--lone 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.results_file import write_results
from envelope.setup import client_for
from provision import lab as lab_mod
from tests.lab.fake_records import writer_accounts
from ztm.anchoring import DEFAULT_INTERVAL
from ztm.anchoring.sinks import sink_for
from ztm.db import connect
from ztm.target import load_target

POLL = 0.02
TIMEOUT = 600.0


def newest_seq(sink) -> int:
    try:
        records = sink.read()
    except Exception:  # a journal being appended to may end in half a line: read again
        return -1
    return max((r["checkpoint"]["events"] for r in records), default=-1)  # events in every lane


def wait_in_every_sink(sinks, seq: int, committed: float) -> dict[str, float]:
    """Seconds from ``committed`` until each sink holds an anchor covering ``seq``."""
    arrived: dict[str, float] = {}
    deadline = committed + TIMEOUT
    while len(arrived) < len(sinks):
        if time.monotonic() > deadline:
            raise SystemExit(f"no anchor covering audit seq {seq} reached every sink in {TIMEOUT:.0f} s: "
                             "is the lab's anchor process running?")
        for sink in sinks:
            if sink.name not in arrived and newest_seq(sink) >= seq:
                arrived[sink.name] = round(time.monotonic() - committed, 3)
        time.sleep(POLL)
    return arrived


def transfer(cur, accounts: list[str]) -> float:
    cur.execute("CALL app_transfer(%s, %s, 1)", (accounts[0], accounts[1]))
    committed = time.monotonic()  # autocommit: the CALL has committed when it returns
    return committed


def head_seq(auditor) -> int:
    with auditor.cursor() as cur:
        cur.execute("SELECT SUM(seq) FROM securedb.audit_chain_head")  # events in every lane
        return int(cur.fetchone()[0])


def burst(cur, accounts, auditor, sinks, every: int) -> dict[str, Any]:
    start = max(newest_seq(s) for s in sinks)
    calls = 0
    while True:
        committed = transfer(cur, accounts)
        calls += 1
        seq = head_seq(auditor)
        if seq >= start + every:
            break
    arrived = wait_in_every_sink(sinks, seq, committed)
    return {"events": seq - start, "transfers": calls, "last_commit_seq": seq, "per_sink_s": arrived,
            "every_sink_s": max(arrived.values())}


def lone(cur, accounts, auditor, sinks, interval: float) -> dict[str, Any]:
    wait_in_every_sink(sinks, head_seq(auditor), time.monotonic())  # nothing pending before the write
    time.sleep(random.uniform(0, interval))  # a random moment of the interval (this is the benchmark's load)
    committed = transfer(cur, accounts)
    seq = head_seq(auditor)
    arrived = wait_in_every_sink(sinks, seq, committed)
    return {"seq": seq, "per_sink_s": arrived, "every_sink_s": max(arrived.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lone", type=int, default=3, help="lone writes to time (each waits up to one interval)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    if lab_mod.anchor_pid(lab) is None:
        raise SystemExit("the lab's anchor process is not running: 'ztm lab up' first")
    target = load_target(lab.target_file)
    section = target.section("anchor")
    interval = float(section.get("interval_seconds", DEFAULT_INTERVAL))
    every = int(section.get("every_events", 0))
    if not every:
        raise SystemExit("the lab target sets no [anchor].every_events: no burst trigger to measure")
    sinks = [sink_for(s, target.resolve) for s in section["sinks"]]
    app = connect(target, target.roles["app"], database=target.database)
    auditor = connect(target, target.roles["auditor"])
    with app.cursor() as cur:
        accounts = writer_accounts(cur, client_for(target), target.raw["tenants"]["granted"][0])
        bursts = [burst(cur, accounts, auditor, sinks, every)]
        lones = [lone(cur, accounts, auditor, sinks, interval) for _ in range(args.lone)]
    lone_s = [x["every_sink_s"] for x in lones]
    doc = {"benchmark": "anchor_latency", "engine": target.engine, "server_version": app.get_server_info(),
           "python": platform.python_version(), "machine": platform.machine(),
           "interval_seconds": interval, "every_events": every, "sinks": [s.name for s in sinks],
           "burst": bursts, "lone": lones,
           "summary": {"burst_every_sink_s": bursts[0]["every_sink_s"],
                       "lone_every_sink_s_mean": round(statistics.mean(lone_s), 3) if lone_s else None,
                       "lone_every_sink_s_max": max(lone_s) if lone_s else None},
           "note": "commit to an anchor covering it in every sink; sinks polled every 20 ms; the lab anchors "
                   "with an RFC 3161 timestamp from its local TSA; the machine is shared"}
    write_results(doc, "anchor_latency", target.engine, args.out, echo=False)
    print(json.dumps(doc["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
