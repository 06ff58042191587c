"""Break-glass admin SQL for lab tests that break the data plane, and its repair.

The lab's anchor is paused while the data plane is broken or being re-applied: an anchor
taken in between would record the breakage (a deleted row, a dropped guard trigger) as
tampering, and ZTM-AUD-3 would rightly report it in every later run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

from provision import lab as lab_mod
from provision import schema
from provision.netns import ACCOUNT_HOST

Runner = Callable[..., list[tuple]]


def runner(lab: lab_mod.Lab) -> Runner:
    """``run(*statements, args=())``: each statement as the admin in securedb; the rows of the last."""

    def run(*statements: str, args: tuple = ()) -> list[tuple]:
        rows: list[tuple] = []
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("USE securedb")
            for statement in statements:
                cur.execute(statement, args if "%s" in statement else None)
                rows = list(cur.fetchall() or [])
        return rows

    return run


@contextmanager
def anchor_paused(lab: lab_mod.Lab) -> Iterator[None]:
    """Nestable: only the outermost pause restarts the anchor, and only if it was running."""
    running = lab_mod.anchor_pid(lab) is not None
    if running:
        lab_mod.anchor_down(lab)
    try:
        yield
    finally:
        if running:
            lab_mod.anchor_up(lab)


def restore(lab: lab_mod.Lab) -> None:
    """Re-apply provision/sql: routines, views, triggers and grants come back as designed."""
    with anchor_paused(lab), lab.admin() as conn:
        schema.apply(conn, account_host=ACCOUNT_HOST)


@contextmanager
def broken(lab: lab_mod.Lab) -> Iterator[Runner]:
    """A runner whose damage is repaired when the block ends, whatever happened in it; the
    anchor does not run in between."""
    with anchor_paused(lab):
        try:
            yield runner(lab)
        finally:
            realign_balances(lab)
            with lab.admin() as conn:
                schema.apply(conn, account_host=ACCOUNT_HOST)


def realign_balances(lab: lab_mod.Lab) -> list[str]:
    """Put every account's balance back to what the trail last recorded for it, without an
    event (its audit triggers dropped meanwhile; re-applying provision/sql brings them back).

    A test that breaks a data trigger and then runs a control that writes (ZTM-AUD-1's probes
    transfer money) leaves balances the trail never saw, which ZTM-AUD-4 would rightly report in
    every later test. Returns the accounts it realigned."""
    database = lab.database()
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute(f"USE `{database}`")
        cur.execute("SELECT payload FROM audit_events ORDER BY seq")  # a lab's trail: small
        recorded: dict[str, Decimal | None] = {}
        for (payload,) in cur.fetchall():
            event = json.loads(payload, parse_float=Decimal)
            if event.get("table") != "accounts":
                continue
            after = event.get("after")
            recorded[event["key"]] = Decimal(after["balance"]) if isinstance(after, dict) else None
        cur.execute("SELECT account_id, balance FROM accounts")
        drifted = [(recorded[key], key) for key, balance in cur.fetchall()
                   if recorded.get(key) is not None and recorded[key] != balance]
        if drifted:
            for op in ("insert", "update", "delete"):
                cur.execute(f"DROP TRIGGER IF EXISTS accounts_audit_{op}")
            cur.executemany("UPDATE accounts SET balance = %s WHERE account_id = %s", drifted)
    return [key for _, key in drifted]


def sql_change(lab: lab_mod.Lab) -> Callable[..., object]:
    """``with change(do, undo):`` applies SQL as the break-glass admin and undoes it when the block
    ends, even if the test fails (the admin_change fixtures, at test or module scope)."""

    @contextmanager
    def change(do: list[str], undo: list[str]) -> Iterator[None]:
        with lab.admin() as conn, conn.cursor() as cur:
            for statement in do:
                cur.execute(statement)
        try:
            yield
        finally:
            with lab.admin() as conn, conn.cursor() as cur:
                for statement in undo:
                    cur.execute(statement)

    return change
