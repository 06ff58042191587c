"""`verify_database` while writers append: the rows and the heads are read in one snapshot.

Reading the rows and then, separately, the head row reported a live chain as "truncated"
whenever a write committed in between (10 of 10 tries under load). The first two tests
show that mechanism deterministically (a write committed between the row read and the
head read, with and without the snapshot); the last verifies repeatedly while writers
run, until several verifications have had commits land during them.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pymysql
import pytest

from envelope.setup import client_for
from tests.lab.fake_records import writer_accounts
from ztm.audit_chain import (
    chain_snapshot,
    check_heads,
    lane_of,
    read_heads,
    stream_trail,
    verify_database,
    verify_lanes,
)
from ztm.db import connect

pytestmark = pytest.mark.lab

WRITERS = 4
MOVED_VERIFICATIONS = 3  # verifications during which the head moved: what this test is about
DEADLINE_S = 600


@pytest.fixture
def app_writer(lab_target):
    """An app connection with its own user and two accounts, and a function that commits one
    transfer (two audit events) and returns only once it is committed."""
    envelope = client_for(lab_target)
    conn = connect(lab_target, lab_target.roles["app"], database="securedb")
    tenant = lab_target.raw["tenants"]["granted"][0]
    with conn.cursor() as cur:
        accounts = writer_accounts(cur, envelope, tenant)

    def transfer() -> None:
        with conn.cursor() as cur:
            cur.execute("CALL app_transfer(%s, %s, 1)", accounts)

    transfer.lane = lane_of(tenant)
    yield transfer
    conn.close()
    envelope.kms.close()


def _heads_now(lab_target) -> dict[int, tuple[int, str]]:
    conn = connect(lab_target, lab_target.roles["auditor"])
    try:
        return read_heads(conn)
    finally:
        conn.close()


def _events_now(lab_target) -> int:
    return sum(seq for seq, _ in _heads_now(lab_target).values())


def test_a_write_between_rows_and_head_is_invisible_inside_the_snapshot(lab_target, app_writer):
    conn = connect(lab_target, lab_target.roles["auditor"])
    try:
        with chain_snapshot(conn):
            seen = read_heads(conn)
            app_writer()  # committed by another connection, after the snapshot began
            report = check_heads(verify_lanes(stream_trail(conn)), read_heads(conn))
    finally:
        conn.close()
    assert report.intact, report.describe()
    assert report.heads() == seen
    lane = app_writer.lane
    assert _heads_now(lab_target)[lane][0] == seen[lane][0] + 2, \
        "the transfer did not commit two events to its lane: the probe is void"


def test_without_the_snapshot_the_same_write_looks_like_a_truncation(lab_target, app_writer):
    """Why the snapshot exists: rows read first, head read after a commit, no snapshot."""
    conn = connect(lab_target, lab_target.roles["auditor"])  # autocommit: each statement its own snapshot
    try:
        rows = list(stream_trail(conn))
        app_writer()
        report = check_heads(verify_lanes(rows), read_heads(conn))
    finally:
        conn.close()
    assert not report.intact and [r.lane for r in report.broken] == [app_writer.lane], report.describe()
    assert "rows truncated or head moved" in report.reason, report.describe()


def test_verify_while_writers_append(lab_target):
    envelope = client_for(lab_target)
    tenants = lab_target.raw["tenants"]["granted"]
    stop, ready = threading.Event(), threading.Barrier(WRITERS + 1)
    failures: list[str] = []

    def writer(index: int) -> None:
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        try:
            with conn.cursor() as cur:
                accounts = writer_accounts(cur, envelope, tenants[index % 2])
                ready.wait()
                call = 0
                while not stop.is_set():
                    source, dest = accounts if call % 2 == 0 else accounts[::-1]
                    # a lock timeout under load rolls the transfer back: no event, nothing to check
                    with contextlib.suppress(pymysql.err.OperationalError):
                        cur.execute("CALL app_transfer(%s, %s, 1)", (source, dest))
                    call += 1
        except Exception as exc:  # reported by the main thread
            failures.append(f"writer {index}: {exc!r}")
            ready.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    for t in threads:
        t.start()
    verifier = connect(lab_target, lab_target.roles["auditor"])
    reports, moved = [], 0
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a writer failed to start: reported below
            ready.wait()
        deadline = time.monotonic() + DEADLINE_S
        while moved < MOVED_VERIFICATIONS and time.monotonic() < deadline and not failures:
            before = _events_now(lab_target)
            report = verify_database(verifier)
            after = _events_now(lab_target)
            reports.append(report)
            assert report.intact, f"verification {len(reports)} during live writes: {report.describe()}"
            moved += after > before
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        verifier.close()
        envelope.kms.close()
    assert not failures, failures
    assert moved >= MOVED_VERIFICATIONS, (f"only {moved} of {len(reports)} verifications saw writers commit "
                                          f"within {DEADLINE_S} s: the writers did not run")
