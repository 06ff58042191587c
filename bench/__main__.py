"""Run every benchmark on the lab and print issue 16's table with "now" filled in.

    .venv/bin/python -m bench [--events N] [--calls N] [--records N] [--skip NAME ...]

Each benchmark runs as its own process and writes bench/results/<name>-<engine>.json; the
table is read back from those files, so a figure and its baseline always come from the same
run. The bulk-load row comes from ``bench.envelope_bulk`` (encrypt + insert through the bulk
procedure against one call per record, and the same batches with the audit triggers dropped).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from provision import lab as lab_mod
from ztm.target import load_target

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
# name -> extra arguments (from the command line options); run in this order.
BENCHMARKS = ("audit_chain", "ledger", "envelope", "envelope_bulk", "controls")


def arguments(name: str, args: argparse.Namespace) -> list[str]:
    return {"audit_chain": ["--events", str(args.events), "--calls", str(args.calls)],
            "ledger": ["--rows", str(args.ledger_rows)],
            "envelope": ["--records", str(args.records), "--insert-records", str(args.insert_records)]}.get(name, [])


def run(name: str, engine: str, args: argparse.Namespace) -> dict[str, Any] | None:
    if importlib.util.find_spec(f"bench.{name}") is None:
        return None
    out = RESULTS / f"{name}-{engine}.json"
    print(f"-- bench.{name}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", *arguments(name, args), "--out", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not out.exists():
        print(f"bench.{name} failed: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f} %" if b else "n/a"


def table(found: dict[str, dict[str, Any] | None]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    chain = (found.get("audit_chain") or {}).get("verify") or {}
    drivers = chain.get("drivers", {})
    for name, d in drivers.items():
        fast, raw = d["verify_segments_rows_per_s"], d["raw_fetch_rows_per_s"]
        rows.append((f"`audit verify` / AUD-2 ({chain.get('events')} events), {name}, {d['workers']} workers",
                     f"{fast:,} rows/s = {_pct(fast, raw)} of {name}'s raw fetch ({raw:,} rows/s); one process: "
                     f"{d['verify_serial_rows_per_s']:,} rows/s", ">= 400k rows/s"))
    if chain:
        rows.append(("old serial verifier (pymysql, str rows)", f"{chain['verify_rows_per_s']:,} rows/s vs raw fetch "
                     f"{chain['fetch_rows_per_s']:,} rows/s", "-"))
    writes = (found.get("audit_chain") or {}).get("transfers_per_s") or {}
    for writers in ("8", "32"):
        if writes.get("audited", {}).get(writers):
            a, u = writes["audited"][writers], writes["unaudited"][writers]
            lanes = writes.get("lanes_used", {}).get(writers)
            rows.append((f"`app_transfer`, audited / unaudited, {writers} writers"
                         + (f" in {writers} tenants ({lanes} lanes)" if lanes else ""),
                         f"{a:,} / {u:,} calls/s = {_pct(a, u)}", ">= 60 %"))
            two = writes.get("audited_two_tenants", {}).get(writers)
            if two:
                rows.append((f"  same, audited, all {writers} writers in the 2 assessment tenants "
                             f"({writes.get('lanes_used_two_tenants')} lanes)", f"{two:,} calls/s = {_pct(two, u)}",
                             "-"))
    envelope = (found.get("envelope") or {}).get("results") or {}
    if envelope:
        on = envelope["encrypt_only_cache_on"]
        rows.append(("KMS calls per 10,000 encrypted records (cache on)",
                     f"{on['kms_calls_per_10000_records']} (cache off: "
                     f"{envelope['encrypt_only_cache_off']['kms_calls_per_10000_records']})",
                     "<= 1 per tenant, no DEK shared"))
        rows.append(("encrypt + insert, end to end (cache on / off)",
                     f"{envelope['encrypt_insert_cache_on']['records_per_s']:,} / "
                     f"{envelope['encrypt_insert_cache_off']['records_per_s']:,} records/s", "-"))
    rows += bulk_row(found.get("envelope_bulk"))
    ledger = found.get("ledger")
    if ledger:
        rows.append(("AUD-4 ledger replay", json.dumps({k: v for k, v in ledger.items()
                                                       if k.endswith(("_per_s", "_s"))})[:200], "-"))
    controls = found.get("controls")
    if controls:
        slow = list(controls["modules_s"].items())[:3]
        rows.append(("slowest controls (junit times)", ", ".join(f"{n} {s} s" for n, s in slow)
                     + f"; over 3 s: {len(controls['over_goal'])}; whole suite {controls['suite_wall_s']} s wall",
                     "every control <= 3 s; whole suite <= 12 s warm"))
    return rows


def bulk_row(bulk: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The bulk load's rows: encrypt + insert in batches against one call per record, and the
    audited batches against the same batches with the audit triggers dropped (same run)."""
    results = (bulk or {}).get("results") or {}
    if "encrypt_insert_bulk" not in results:
        return [("bulk load (encrypt + insert)", "not measured (bench.envelope_bulk failed or was skipped)",
                 ">= 3,000 records/s")]

    def rate(key: str) -> Any:
        return results.get(key, {}).get("records_per_s")

    return [("bulk load (encrypt + insert)", f"{rate('encrypt_insert_bulk')} records/s (one call per record: "
             f"{rate('encrypt_insert_single')})", ">= 3,000 records/s"),
            ("bulk insert of pre-encrypted records, audited", f"{rate('insert_only_bulk')} records/s (audit triggers "
             f"dropped: {rate('insert_only_bulk_unaudited')})", "-")]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--ledger-rows", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--insert-records", type=int, default=2_000)
    parser.add_argument("--skip", action="append", default=[], choices=BENCHMARKS)
    parser.add_argument("--only-table", action="store_true", help="print the table from the stored results")
    args = parser.parse_args()
    engine = load_target(lab_mod.Lab(lab_mod.default_lab_dir()).target_file).engine
    found: dict[str, dict[str, Any] | None] = {}
    for name in BENCHMARKS:
        if name in args.skip:
            continue
        stored = RESULTS / f"{name}-{engine}.json"
        if args.only_table:
            found[name] = json.loads(stored.read_text()) if stored.exists() else None
        else:
            found[name] = run(name, engine, args)
    print(f"| what ({engine}) | now | goal |\n|---|---|---|")
    for what, now, goal in table(found):
        print(f"| {what} | {now} | {goal} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
