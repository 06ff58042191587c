"""app_transfer is atomic and never makes a balance negative, alone or under concurrency.

A refused transfer changes no balance and appends no audit event. Concurrent overdrafts of
one source account: exactly as many transfers commit as the balance covers, every other one
is refused for insufficient funds (not by the CHECK constraint behind it), the source ends
at the exact remainder and money is conserved.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pymysql
import pytest

from tests.lab.fake_records import app_in_tenant, writer_accounts
from ztm.db import connect

pytestmark = pytest.mark.lab

THREADS, TRIES, AMOUNT, OPENING = 16, 3, Decimal(7), Decimal(100)
RETRYABLE = {1205, 1213}  # lock wait timeout, deadlock: rolled back whole, tried again



def _state(lab_target, conn, accounts: list[str]) -> tuple[list[Decimal], int]:
    """The balances (as the app sees them) and the audit head seq (as the auditor sees it)."""
    with conn.cursor() as cur:
        balances = []
        for account in accounts:
            cur.execute("SELECT balance FROM v_accounts WHERE account_id = %s", (account,))
            balances.append(cur.fetchone()[0])
    with connect(lab_target, lab_target.roles["auditor"]) as auditor, auditor.cursor() as cur:
        cur.execute(f"SELECT SUM(seq) FROM `{lab_target.database}`.audit_chain_head")  # every lane
        (head,) = cur.fetchone()
    return balances, int(head)


def _transfer(conn, source: str, dest: str, amount: Decimal) -> tuple[int, str] | None:
    try:
        with conn.cursor() as cur:
            cur.execute("CALL app_transfer(%s, %s, %s)", (source, dest, amount))
    except pymysql.MySQLError as exc:
        return exc.args[0], str(exc.args[-1])
    return None


def test_refused_transfers_change_nothing(lab_target, envelope):
    tenant = lab_target.raw["tenants"]["granted"][0]
    conn = app_in_tenant(lab_target, tenant)
    try:
        with conn.cursor() as cur:
            accounts = writer_accounts(cur, envelope, tenant, opening=10)
            cur.execute("SELECT user_id FROM v_accounts WHERE account_id = %s", (accounts[0],))
            (user_id,) = cur.fetchone()
            cur.execute("CALL app_open_account(%s, 'USD', 0)", (user_id,))
            (dollars,) = cur.fetchall()[0]
        before = _state(lab_target, conn, [*accounts, dollars])
        refusals = {"overdraft": _transfer(conn, accounts[0], accounts[1], Decimal("10.0001")),
                    "other currency": _transfer(conn, accounts[0], dollars, Decimal(1)),
                    "negative amount": _transfer(conn, accounts[0], accounts[1], Decimal(-5))}
        after_refusals = _state(lab_target, conn, [*accounts, dollars])
        assert _transfer(conn, accounts[0], accounts[1], Decimal(10)) is None, "the whole balance cannot move"
        emptied = _state(lab_target, conn, [*accounts, dollars])
        refusals["one cent more"] = _transfer(conn, accounts[0], accounts[1], Decimal("0.01"))
    finally:
        conn.close()
    assert refusals["overdraft"] and "insufficient funds" in refusals["overdraft"][1], refusals
    assert refusals["other currency"] and "different currencies" in refusals["other currency"][1], refusals
    assert refusals["negative amount"] and "must be positive" in refusals["negative amount"][1], refusals
    assert refusals["one cent more"] and "insufficient funds" in refusals["one cent more"][1], refusals
    assert after_refusals == before, "a refused transfer changed a balance or appended audit events"
    assert emptied[0][:2] == [Decimal(0), Decimal(20)] and emptied[1] == before[1] + 2


def test_concurrent_overdrafts_never_make_a_balance_negative(lab_target, envelope):
    tenant = lab_target.raw["tenants"]["granted"][1]
    owner = app_in_tenant(lab_target, tenant)
    with owner.cursor() as cur:
        source, dest = writer_accounts(cur, envelope, tenant, opening=int(OPENING))
    # Generous timeouts: a thread that cannot connect aborts the barrier instead of leaving
    # the others waiting forever (16 mTLS logins at once on a loaded 2-core machine).
    start = threading.Barrier(THREADS, timeout=300)
    outcomes: list[tuple[int, str] | None] = []
    failures: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        try:
            conn = app_in_tenant(lab_target, tenant)
        except Exception as exc:  # reported below, and the barrier released
            failures.append(f"connect: {exc!r}")
            start.abort()
            return
        try:
            start.wait()
            for _ in range(TRIES):
                while True:
                    result = _transfer(conn, source, dest, AMOUNT)
                    if result is None or result[0] not in RETRYABLE:
                        break
                with lock:
                    outcomes.append(result)
        except Exception as exc:  # reported below
            failures.append(repr(exc))
            start.abort()
        finally:
            conn.close()

    before = _state(lab_target, owner, [source, dest])
    threads = [threading.Thread(target=drain, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not failures, f"a drain thread failed: {failures[:3]}"
    (balance_source, balance_dest), head = _state(lab_target, owner, [source, dest])
    owner.close()
    committed = sum(1 for o in outcomes if o is None)
    other = [o for o in outcomes if o is not None and "insufficient funds" not in o[1]]
    covered = int(OPENING // AMOUNT)
    assert len(outcomes) == THREADS * TRIES, "a drain thread did not finish"
    assert not other, f"transfers refused for another reason than insufficient funds: {other[:3]}"
    assert balance_source >= 0, f"the source balance went negative: {balance_source}"
    assert committed == covered, f"{committed} transfers of {AMOUNT} committed from {OPENING}, expected {covered}"
    assert balance_source == OPENING - covered * AMOUNT and balance_source + balance_dest == sum(before[0])
    assert head - before[1] == 2 * committed, "audit events do not match the committed transfers"


def test_a_transfer_locks_only_its_two_accounts(lab, lab_target, envelope):
    """A row lock held on another account of the tenant does not hold up a transfer.

    The ids are compared in the columns' own collation, so app_transfer reaches its two rows
    through the primary key; compared in the connection's collation instead, it would scan
    and lock every row, and wait here until the lock wait timed out (1205).
    """
    tenant = lab_target.raw["tenants"]["granted"][0]
    conn = app_in_tenant(lab_target, tenant)
    try:
        with conn.cursor() as cur:
            source, dest = writer_accounts(cur, envelope, tenant, opening=10)
            bystander, _ = writer_accounts(cur, envelope, tenant, opening=10)
            cur.execute("SET SESSION innodb_lock_wait_timeout = 5")
        with lab.admin() as admin, admin.cursor() as held:
            held.execute("START TRANSACTION")
            held.execute(f"SELECT balance FROM `{lab_target.database}`.accounts WHERE account_id = %s FOR UPDATE",
                         (bystander,))
            refused = _transfer(conn, source, dest, Decimal(1))
            held.execute("ROLLBACK")
    finally:
        conn.close()
    assert refused is None, f"a transfer waited on another account's row lock: {refused}"
