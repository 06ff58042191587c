#!/usr/bin/env python3
"""KMS calls per 10,000 records and bulk vs single-record inserts, measured in one run on the
lab; writes JSON (bench/results/envelope_bulk-<engine>.json) and prints it.

- KMS calls per N records (default 10,000), DEK cache on: the v2 shape (a branch key per
  tenant, a derived DEK per record) and, as the baseline, the v1 shape (a cached DEK serving
  up to [crypto.dek_cache].max_messages records); plus the distinct salts of the v2 records.
- Inserts, end to end (encrypt + store, one mTLS connection, every row audited): records/s
  of app_create_users_encrypted in batches (--batch) over N records against
  app_create_user_encrypted one call per record over --single-records records; and the
  same two with the encryption done beforehand (the database's share alone); and that bulk
  insert once more with the users audit triggers dropped (the anchor paused, the data plane
  re-applied afterwards): what the per-row audit costs a bulk load.

Usage (root, lab up, project root): ZTM_LAB_INSTANCE=N .venv/bin/python -m bench.envelope_bulk
"""

from __future__ import annotations

import argparse
import base64
import platform
import time
import uuid
from pathlib import Path

from bench.results_file import write_results
from envelope import branch, bulk
from envelope.client import EnvelopeClient, api_json
from envelope.setup import client_for
from provision import lab as lab_mod
from provision import schema
from provision.netns import ACCOUNT_HOST
from ztm.db import connect
from ztm.target import load_target

PII = {"name": "Bench Mark", "email": "bench@example.invalid", "phone": "+15550001111"}


def kms_calls(target, records: int, *, legacy_v1: bool) -> dict[str, float]:
    client = client_for(target, cache=True)
    client.legacy_v1 = legacy_v1
    tenant = target.raw["tenants"]["granted"][1]
    try:
        start = time.perf_counter()
        docs = [client.encrypt_user(tenant, PII, "bench") for _ in range(records)]
        elapsed = time.perf_counter() - start
        calls = client.kms.calls
    finally:
        client.kms.close()
    salts = {parts[0] for d in docs if (parts := branch.unpack(base64.b64decode(d["pii_wrapped_key"])))}
    return {"records": records, "kms_calls": calls, "kms_calls_per_10000_records": round(calls * 10000 / records, 2),
            "distinct_salts": len(salts), "encrypt_records_per_s": round(records / elapsed, 1)}


def _app(target, tenant: str):
    conn = connect(target, target.roles["app"], database=target.database)
    with conn.cursor() as cur:
        cur.execute("CALL security_set_tenant(%s)", (tenant,))
    return conn


def inserts(target, client: EnvelopeClient, records: int, *, batch: int | None, pre_encrypted: bool) -> dict:
    """``batch`` None: one app_create_user_encrypted call per record; else the bulk procedure."""
    tenant = target.raw["tenants"]["granted"][1]
    conn = _app(target, tenant)

    def docs():
        return (client.encrypt_user(tenant, PII, "bench", str(uuid.uuid4())) for _ in range(records))

    source = list(docs()) if pre_encrypted else docs()
    try:
        start = time.perf_counter()
        if batch is None:
            with conn.cursor() as cur:
                for doc in source:
                    cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
                    cur.fetchall()
        else:
            stored = bulk.import_records(conn, source, size=batch)
            assert stored == records, f"stored {stored} of {records}"
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return {"records": records, "batch": batch, "pre_encrypted": pre_encrypted,
            "records_per_s": round(records / elapsed, 1), "seconds": round(elapsed, 2)}


def unaudited(target, client: EnvelopeClient, records: int, batch: int) -> dict:
    """The pre-encrypted bulk insert with the users audit triggers dropped for its duration;
    the rows it stored are deleted again before the triggers return, so the data still equals
    its trail (AUD-4) afterwards."""
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    users = f"`{target.database}`.users"
    lab_mod.anchor_down(lab)  # unaudited rows and the re-applied triggers are not tampering to record
    try:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT user_id FROM {users}")
            before = {r[0] for r in cur.fetchall()}
            for op in ("insert", "update", "delete"):
                cur.execute(f"DROP TRIGGER `{target.database}`.users_audit_{op}")
        try:
            return inserts(target, client, records, batch=batch, pre_encrypted=True)
        finally:
            with lab.admin() as conn:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT user_id FROM {users}")
                    added = [r[0] for r in cur.fetchall() if r[0] not in before]
                    cur.executemany(f"DELETE FROM {users} WHERE user_id = %s", [(u,) for u in added])
                conn.commit()
                schema.apply(conn, account_host=ACCOUNT_HOST, database=target.database)
    finally:
        lab_mod.anchor_up(lab)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--single-records", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=bulk.BATCH)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    target = load_target(lab_mod.Lab(lab_mod.default_lab_dir()).target_file)
    results: dict[str, dict] = {
        "kms_v2_branch_key": kms_calls(target, args.records, legacy_v1=False),
        "kms_v1_cached_dek_baseline": kms_calls(target, args.records, legacy_v1=True)}
    client = client_for(target, cache=True)
    try:
        for pre in (False, True):
            label = "insert_only" if pre else "encrypt_insert"
            results[f"{label}_single"] = inserts(target, client, args.single_records, batch=None, pre_encrypted=pre)
            results[f"{label}_bulk"] = inserts(target, client, args.records, batch=args.batch, pre_encrypted=pre)
            results[f"{label}_bulk_vs_single"] = {"ratio": round(results[f"{label}_bulk"]["records_per_s"]
                                                                 / results[f"{label}_single"]["records_per_s"], 2)}
        results["insert_only_bulk_unaudited"] = unaudited(target, client, args.records, args.batch)
        results["insert_only_bulk_audited_vs_unaudited"] = {"ratio": round(
            results["insert_only_bulk"]["records_per_s"] / results["insert_only_bulk_unaudited"]["records_per_s"], 2)}
    finally:
        client.kms.close()
    doc = {"benchmark": "envelope_bulk", "engine": target.engine, "kms": target.section("kms").get("provider"),
           "pq_wrap": bool(target.section("crypto").get("require_pq")), "python": platform.python_version(),
           "goals": {"kms_calls_per_tenant": "<= 1", "bulk_records_per_s": ">= 3000"}, "results": results}
    write_results(doc, "envelope_bulk", target.engine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
