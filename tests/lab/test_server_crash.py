"""``kill -9`` of the database server under 8 concurrent writers: no acknowledged write is
lost, nothing unacknowledged beyond the one call each writer had in flight appears, the
audit chain is intact and accounts for exactly the committed transfers, and every control
passes after the restart.

Each writer moves 1 EUR at a time from its first account to its second; a transfer the
server acknowledged is counted, the call in flight when the server died is "unknown"
(it may have committed or not). After crash recovery, the first account's balance says how
many transfers committed: acknowledged <= committed <= acknowledged + in flight."""

from __future__ import annotations

import os
import signal
import threading
import time
from decimal import Decimal

import pymysql
import pytest

from envelope.setup import client_for
from provision import server
from tests.lab.fake_records import writer_accounts
from ztm.audit_chain import verify_database
from ztm.db import connect

pytestmark = pytest.mark.lab

WRITERS, OPENING, MAX_CALLS, KILL_AFTER = 8, 1000, 900, 40 * 8


def _wait_dead(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # reap it when this process started it (the lab fixture may have): a zombie is dead
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server (pid {pid}) survived SIGKILL for {timeout} s")


def test_kill_9_under_eight_writers_loses_no_acknowledged_write(lab, lab_target, control, record_property):
    tenants = lab_target.raw["tenants"]["granted"]
    envelope = client_for(lab_target)
    writers = []
    try:
        for index in range(WRITERS):
            conn = connect(lab_target, lab_target.roles["app"], database="securedb", read_timeout=60,
                           write_timeout=60)
            with conn.cursor() as cur:
                writers.append((conn, tenants[index % 2], writer_accounts(cur, envelope, tenants[index % 2],
                                                                          opening=OPENING)))
    finally:
        envelope.kms.close()
    with lab.admin() as admin, admin.cursor() as cur:
        cur.execute("SELECT SUM(seq) FROM securedb.audit_chain_head")  # events in every lane
        head_before = int(cur.fetchone()[0])

    acknowledged = [0] * WRITERS
    in_flight = [0] * WRITERS
    unexpected: list[str] = []
    start = threading.Barrier(WRITERS + 1, timeout=120)

    def write(index: int) -> None:
        conn, _, (source, dest) = writers[index]
        start.wait()
        try:
            with conn.cursor() as cur:
                for _ in range(MAX_CALLS):
                    in_flight[index] = 1
                    try:
                        cur.execute("CALL app_transfer(%s, %s, 1)", (source, dest))
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] in (1205, 1213):  # rolled back whole: not in flight, try again
                            in_flight[index] = 0
                            continue
                        return  # the server is gone: this call's outcome is unknown
                    acknowledged[index] += 1
                    in_flight[index] = 0
        except Exception as exc:  # anything but the connection dying is a finding
            if not isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
                unexpected.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    start.wait()
    deadline = time.monotonic() + 300
    while sum(acknowledged) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = server.read_pid(lab.server)
    assert pid is not None and sum(acknowledged) >= KILL_AFTER, "the writers did not get going"
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung after the server died"
    assert not unexpected, unexpected
    assert max(acknowledged) < MAX_CALLS, "a writer finished before the kill: it did not test the crash"
    lab.start_server()

    committed = []
    for _, tenant, (source, _dest) in writers:
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            cur.execute("SELECT balance FROM v_accounts WHERE account_id = %s", (source,))
            (balance,) = cur.fetchone()
        conn.close()
        committed.append(int(Decimal(OPENING) - balance))
    lost = {i: (acknowledged[i], committed[i]) for i in range(WRITERS) if committed[i] < acknowledged[i]}
    phantom = {i: (acknowledged[i], committed[i]) for i in range(WRITERS)
               if committed[i] > acknowledged[i] + in_flight[i]}
    record_property("acknowledged", sum(acknowledged))
    record_property("committed", sum(committed))
    assert not lost, f"acknowledged transfers lost in the crash (writer: acknowledged, committed): {lost}"
    assert not phantom, f"more transfers committed than were sent (writer: acknowledged, committed): {phantom}"

    with lab.admin() as admin:
        report = verify_database(admin)
        with admin.cursor() as cur:
            cur.execute("SELECT SUM(seq) FROM securedb.audit_chain_head")  # events in every lane
            head_after = int(cur.fetchone()[0])
    assert report.intact, report.describe()
    assert head_after - head_before == 2 * sum(committed), (
        f"{head_after - head_before} audit events for {sum(committed)} committed transfers "
        f"({sum(acknowledged)} acknowledged)")

    run = control()
    run.assert_all_passed()
    assert run.exit_code == 0, run.output[-2000:]
