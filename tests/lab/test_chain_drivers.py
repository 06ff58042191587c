"""Both drivers and the segment-parallel verifier give the same verdict on the same stored
trail, intact and broken (a gap, a link mismatch and a hash mismatch at a segment boundary,
a moved head, a lane's head row dropped). The trail is a scratch copy (no guard triggers) so
it can be broken: lane 5 long enough to be cut into seq ranges, lane 9 verified whole."""

from __future__ import annotations

import pymysql
import pytest

from ztm.audit_chain import GENESIS, LANES, link_hash, verify_database
from ztm.db import connect, connect_c

pytestmark = pytest.mark.lab

SCRATCH = "ztm_chain_drivers"
ROWS, OTHER, WORKERS = 3000, 1000, 3  # lane 5 in pieces (0,1000], (1000,2000], (2000,3000]; lane 9 whole
LANE, OTHER_LANE = 5, 9
KEYS = ("lane", "intact", "checked", "first_seq", "last_seq", "head_hash", "broken_seq", "reason")


def lane_rows(lane: int, count: int) -> list[tuple]:
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        payload = (f'{{"lane": {lane}, "seq": {seq}, "table": "users", "op": "INSERT", '
                   f'"after": {{"name": "Zoë {seq}"}}}}')
        curr = link_hash(prev, payload)
        rows.append((lane, seq, payload, prev, curr))
        prev = curr
    return rows


def heads(rows) -> list[tuple]:
    last = {r[0]: (r[1], r[4]) for r in rows}
    return [(lane, *last.get(lane, (0, GENESIS))) for lane in range(LANES)]


def restore(cur, rows) -> None:
    cur.execute(f"DELETE FROM {SCRATCH}.audit_events")
    cur.executemany(f"INSERT INTO {SCRATCH}.audit_events (lane, seq, payload, prev_hash, curr_hash) "
                    "VALUES (%s, %s, %s, %s, %s)", rows)
    cur.execute(f"DELETE FROM {SCRATCH}.audit_chain_head")
    cur.executemany(f"INSERT INTO {SCRATCH}.audit_chain_head (lane, seq, head_hash) VALUES (%s, %s, %s)", heads(rows))


@pytest.fixture(scope="module")
def scratch(lab_target):
    admin = connect(lab_target, lab_target.roles["admin"])
    rows = lane_rows(LANE, ROWS) + lane_rows(OTHER_LANE, OTHER)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
        cur.execute(f"CREATE DATABASE {SCRATCH}")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_events LIKE `{lab_target.database}`.audit_events")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_chain_head LIKE `{lab_target.database}`.audit_chain_head")
        restore(cur, rows)
    yield admin, rows
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
    admin.close()


def _c_driver(target):
    conn = connect_c(target, target.roles["admin"])
    if conn is None:
        pytest.fail("mysqlclient (MySQLdb) is not installed: the C driver path cannot be compared")
    return conn


def _verdicts(target) -> dict[str, tuple]:
    identity = target.roles["admin"]
    found = {}
    for name, opener in (("pymysql", lambda: connect(target, identity)), ("mysqlclient", lambda: _c_driver(target))):
        conn = opener()
        try:
            serial = verify_database(conn, database=SCRATCH)
            parallel = verify_database(conn, database=SCRATCH, connect=opener, workers=WORKERS, min_segment_rows=1)
        finally:
            conn.close()
        for how, report in (("serial", serial), ("segments", parallel)):
            found[f"{name} {how}"] = (report.intact, report.checked, report.describe(),
                                      [tuple(getattr(r, k) for k in KEYS) for r in report.lanes])
    return found


BREAKAGES = {
    "intact": ([], []),
    "gap at a segment's first row": ([f"DELETE FROM {SCRATCH}.audit_events WHERE lane = {LANE} AND seq = 1001"],
                                     None),
    "link mismatch at a segment's first row": (
        [f"UPDATE {SCRATCH}.audit_events SET prev_hash = REPEAT('f', 64) WHERE lane = {LANE} AND seq = 2001"], None),
    "hash mismatch at a segment's last row": (
        [f"UPDATE {SCRATCH}.audit_events SET payload = REPLACE(payload, 'Zoë', 'Eve') WHERE lane = {LANE} "
         "AND seq = 1000"], None),
    "hash mismatch in the lane verified whole": (
        [f"UPDATE {SCRATCH}.audit_events SET payload = REPLACE(payload, 'Zoë', 'Eve') WHERE lane = {OTHER_LANE} "
         "AND seq = 500"], None),
    "head mismatch": ([f"UPDATE {SCRATCH}.audit_chain_head SET seq = seq - 1 WHERE lane = {LANE}"], None),
    "a lane's head row dropped": ([f"DELETE FROM {SCRATCH}.audit_chain_head WHERE lane = {OTHER_LANE}"], None),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_both_drivers_and_segments_agree(lab_target, scratch, name):
    admin, rows = scratch
    do, _ = BREAKAGES[name]
    with admin.cursor() as cur:
        for sql in do:
            cur.execute(sql)
    try:
        found = _verdicts(lab_target)
    finally:  # restore the scratch chain whole
        with admin.cursor() as cur:
            restore(cur, rows)
    reference = found["pymysql serial"]
    assert reference[0] == (name == "intact"), f"{name}: the serial verifier says {reference}"
    assert all(v == reference for v in found.values()), f"{name}: verdicts differ: {found}"
    if name != "intact":
        assert "audit trail broken: " in reference[2] and len(reference[2]) > 30, "a broken trail without a reason"


def test_a_failed_worker_is_an_error_never_a_verdict(lab_target, scratch):
    admin, _ = scratch

    def refused():
        raise pymysql.err.OperationalError(1045, "probe: this worker cannot log in")

    with pytest.raises(RuntimeError, match="cannot log in"):
        verify_database(admin, database=SCRATCH, connect=refused, workers=WORKERS, min_segment_rows=1)
