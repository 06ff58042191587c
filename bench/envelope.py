#!/usr/bin/env python3
"""Envelope encryption benchmarks on the lab; writes JSON (bench/results/envelope-<engine>.json).

For N records (default 10,000; --insert-records for the database part): records/s for
encrypt-only and for encrypt + insert through app_create_user_encrypted (one mTLS
connection), each with the DEK cache on and off, and the number of KMS calls.
The KMS is the lab's SoftHSM2 token (PKCS#11), the PQ wrap as the target requires, the
DEK cache limits from the target's [crypto.dek_cache].

Usage (root, lab up, project root): .venv/bin/python -m bench.envelope
"""

from __future__ import annotations

import argparse
import platform
import time
import uuid
from pathlib import Path

from bench.results_file import write_results
from envelope.cache import DekCache
from envelope.client import api_json
from envelope.setup import client_for
from provision import lab as lab_mod
from ztm.db import connect
from ztm.target import load_target

PII = {"name": "Bench Mark", "email": "bench@example.invalid", "phone": "+15550001111"}


def run(target, records: int, *, cache: bool, insert: bool) -> dict[str, float]:
    client = client_for(target, cache=cache)
    tenant = target.raw["tenants"]["granted"][1]
    conn = None
    if insert:
        conn = connect(target, target.roles["app"], database=target.database)
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
    calls = client.kms.calls
    start = time.perf_counter()
    for _ in range(records):
        doc = client.encrypt_user(tenant, PII, "bench", str(uuid.uuid4()))
        if conn is not None:
            with conn.cursor() as cur:
                cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
                cur.fetchall()
    elapsed = time.perf_counter() - start
    kms_calls = client.kms.calls - calls
    client.kms.close()
    if conn is not None:
        conn.close()
    return {"records": records, "records_per_s": round(records / elapsed, 1),
            "kms_calls": kms_calls, "kms_calls_per_10000_records": round(kms_calls * 10000 / records, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--insert-records", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    target = load_target(lab_mod.Lab(lab_mod.default_lab_dir()).target_file)
    results = {}
    cache_limits = DekCache.from_config(target.section("crypto").get("dek_cache", {})).limits()
    for cache in (True, False):
        label = "cache_on" if cache else "cache_off"
        results[f"encrypt_only_{label}"] = run(target, args.records, cache=cache, insert=False)
        results[f"encrypt_insert_{label}"] = run(target, args.insert_records, cache=cache, insert=True)
    doc = {"benchmark": "envelope", "engine": target.engine, "kms": target.section("kms").get("provider"),
           "pq_wrap": bool(target.section("crypto").get("require_pq")), "python": platform.python_version(),
           "dek_cache_limits": cache_limits, "results": results}
    write_results(doc, "envelope", target.engine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
