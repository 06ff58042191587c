"""32 concurrent writers x 500 API calls: the audit chain stays one verifiable chain.

Each writer has its own connection (mTLS as app_user), its own user and two accounts, and
moves 1 EUR back and forth 500 times through app_transfer. Every committed transfer updates
two rows, so it must add exactly two audit events; a rolled-back one adds none. Writers
contend only on the chain head, which is what this test is about.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pymysql
import pytest

from envelope.setup import client_for
from tests.lab.fake_records import writer_accounts
from ztm.audit_chain import verify_database
from ztm.db import connect

pytestmark = pytest.mark.lab

WRITERS, CALLS = 32, 500


def test_concurrent_writers_leave_one_intact_chain(lab_target, record_property):
    admin = connect(lab_target, lab_target.roles["admin"])
    with admin.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM securedb.audit_events")
        (events_before,) = cur.fetchone()
    tenants = lab_target.raw["tenants"]["granted"]
    start = threading.Barrier(WRITERS)
    envelope = client_for(lab_target)  # one client, its DEK cache shared by the writers
    errors: list[int] = []

    def writer(index: int) -> tuple[int, int, int]:
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        setup, committed, refused = 0, 0, 0
        try:
            with conn.cursor() as cur:
                accounts = writer_accounts(cur, envelope, tenants[index % 2])
                setup = 3
                start.wait()
                for call in range(CALLS):
                    source, dest = accounts if call % 2 == 0 else accounts[::-1]
                    try:
                        cur.execute("CALL app_transfer(%s, %s, 1)", (source, dest))
                        committed += 1
                    except pymysql.err.OperationalError as exc:
                        refused += 1  # a deadlock or lock timeout rolls the transfer back: no event
                        errors.append(exc.args[0])
        finally:
            conn.close()
        return setup, committed, refused

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    setup = sum(r[0] for r in results)
    committed = sum(r[1] for r in results)
    refused = sum(r[2] for r in results)
    with admin.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT prev_hash) FROM securedb.audit_events")
        events_after, distinct_prev = cur.fetchone()
    report = verify_database(admin)
    admin.close()
    record_property("transfers_committed", committed)
    record_property("transfers_refused", refused)
    assert setup == WRITERS * 3
    assert committed + refused == WRITERS * CALLS
    assert report.intact, report.describe()
    assert events_after - events_before == setup + 2 * committed, (
        f"{events_after - events_before} new events for {setup} setup calls and {committed} committed transfers")
    assert distinct_prev == events_after, "two events share a predecessor: the chain forked"
    assert committed >= WRITERS * CALLS * 0.99, (f"{refused} of {WRITERS * CALLS} transfers were refused "
                                                 f"(errors {sorted(set(errors))})")
