"""32 concurrent writers x 500 API calls: every lane of the audit trail stays verifiable.

Each writer has its own connection (mTLS as app_user), its own user and two accounts in one
of eight tenants, and moves 1 EUR back and forth 500 times through app_transfer. Every
committed transfer updates two rows, so it must add exactly two audit events, in its
tenant's lane; a rolled-back one adds none. Writers of a tenant contend on its lane's head,
writers of tenants in different lanes on nothing: no event lost, forked or orphaned in any.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pymysql
import pytest

from envelope.setup import client_for
from tests.lab.fake_records import load_tenants, writer_accounts
from ztm.audit_chain import lane_of, verify_database
from ztm.db import connect

pytestmark = pytest.mark.lab

WRITERS, CALLS = 32, 500


def test_concurrent_writers_leave_one_intact_chain(lab_target, record_property):
    admin = connect(lab_target, lab_target.roles["admin"])
    tenants = lab_target.raw["tenants"]["granted"] + load_tenants(admin, lab_target.roles["app"].user, 6)
    with admin.cursor() as cur:
        cur.execute("SELECT lane, COUNT(*) FROM securedb.audit_events GROUP BY lane")
        before = dict(cur.fetchall())
    start = threading.Barrier(WRITERS)
    envelope = client_for(lab_target)  # one client, its DEK cache shared by the writers
    errors: list[int] = []

    def writer(index: int) -> tuple[int, int, int, int]:
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        setup, committed, refused = 0, 0, 0
        try:
            with conn.cursor() as cur:
                accounts = writer_accounts(cur, envelope, tenants[index % len(tenants)])
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
        return setup, committed, refused, lane_of(tenants[index % len(tenants)])

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    setup = sum(r[0] for r in results)
    committed = sum(r[1] for r in results)
    refused = sum(r[2] for r in results)
    with admin.cursor() as cur:
        cur.execute("SELECT lane, COUNT(*) FROM securedb.audit_events GROUP BY lane")
        after = dict(cur.fetchall())
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT lane, prev_hash) FROM securedb.audit_events")
        events_after, distinct_prev = cur.fetchone()
    report = verify_database(admin)
    expected: dict[int, int] = {}
    for r in results:
        expected[r[3]] = expected.get(r[3], 0) + r[0] + 2 * r[1]
    grown = {lane: after.get(lane, 0) - before.get(lane, 0) for lane in set(after) | set(before)}
    admin.close()
    record_property("transfers_committed", committed)
    record_property("transfers_refused", refused)
    assert setup == WRITERS * 3
    assert committed + refused == WRITERS * CALLS
    assert report.intact, report.describe()
    assert len(expected) > 1, "the writers' tenants all share one lane: the test shows nothing about lanes"
    assert {lane: n for lane, n in grown.items() if n} == expected, (
        f"new events per lane {grown} for the setup calls and committed transfers of each lane's writers: {expected}")
    assert distinct_prev == events_after, "two events of one lane share a predecessor: the lane forked"
    assert committed >= WRITERS * CALLS * 0.99, (f"{refused} of {WRITERS * CALLS} transfers were refused "
                                                 f"(errors {sorted(set(errors))})")
