"""Both drivers and the segment-parallel verifier give the same verdict on the same stored
chain, intact and broken (a gap, a link mismatch and a hash mismatch at a segment boundary,
a moved head). The chain is a scratch copy (no guard triggers) so it can be broken."""

from __future__ import annotations

import pymysql
import pytest

from ztm.audit_chain import GENESIS, link_hash, verify_database
from ztm.db import connect, connect_c

pytestmark = pytest.mark.lab

SCRATCH = "ztm_chain_drivers"
ROWS, WORKERS = 3000, 3  # segments (0,1000], (1000,2000], (2000,3000]
KEYS = ("intact", "checked", "first_seq", "last_seq", "head_hash", "broken_seq", "reason")


@pytest.fixture(scope="module")
def scratch(lab_target):
    admin = connect(lab_target, lab_target.roles["admin"])
    rows, prev = [], GENESIS
    for seq in range(1, ROWS + 1):
        payload = f'{{"seq": {seq}, "table": "users", "op": "INSERT", "after": {{"name": "Zoë {seq}"}}}}'
        curr = link_hash(prev, payload)
        rows.append((seq, payload, prev, curr))
        prev = curr
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
        cur.execute(f"CREATE DATABASE {SCRATCH}")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_events LIKE `{lab_target.database}`.audit_events")
        cur.execute(f"CREATE TABLE {SCRATCH}.audit_chain_head LIKE `{lab_target.database}`.audit_chain_head")
        cur.executemany(f"INSERT INTO {SCRATCH}.audit_events (seq, payload, prev_hash, curr_hash) "
                        "VALUES (%s, %s, %s, %s)", rows)
        cur.execute(f"INSERT INTO {SCRATCH}.audit_chain_head (id, seq, head_hash) VALUES (1, %s, %s)", (ROWS, prev))
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
        found[f"{name} serial"] = tuple(getattr(serial, k) for k in KEYS)
        found[f"{name} segments"] = tuple(getattr(parallel, k) for k in KEYS)
    return found


BREAKAGES = {
    "intact": ([], []),
    "gap at a segment's first row": ([f"DELETE FROM {SCRATCH}.audit_events WHERE seq = 1001"], None),
    "link mismatch at a segment's first row": (
        [f"UPDATE {SCRATCH}.audit_events SET prev_hash = REPEAT('f', 64) WHERE seq = 2001"], None),
    "hash mismatch at a segment's last row": (
        [f"UPDATE {SCRATCH}.audit_events SET payload = REPLACE(payload, 'Zoë', 'Eve') WHERE seq = 1000"], None),
    "head mismatch": ([f"UPDATE {SCRATCH}.audit_chain_head SET seq = seq - 1 WHERE id = 1"], None),
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
            cur.execute(f"DELETE FROM {SCRATCH}.audit_events")
            cur.executemany(f"INSERT INTO {SCRATCH}.audit_events (seq, payload, prev_hash, curr_hash) "
                            "VALUES (%s, %s, %s, %s)", rows)
            cur.execute(f"UPDATE {SCRATCH}.audit_chain_head SET seq = %s, head_hash = %s WHERE id = 1",
                        (ROWS, rows[-1][3]))
    reference = found["pymysql serial"]
    assert reference[0] == (name == "intact"), f"{name}: the serial verifier says {reference}"
    assert all(v == reference for v in found.values()), f"{name}: verdicts differ: {found}"
    if name != "intact":
        assert reference[6], "a broken chain without a reason"


def test_a_failed_worker_is_an_error_never_a_verdict(lab_target, scratch):
    admin, _ = scratch

    def refused():
        raise pymysql.err.OperationalError(1045, "probe: this worker cannot log in")

    with pytest.raises(RuntimeError, match="cannot log in"):
        verify_database(admin, database=SCRATCH, connect=refused, workers=WORKERS, min_segment_rows=1)
