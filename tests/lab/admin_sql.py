"""Break-glass admin SQL for lab tests that break the data plane, and its repair."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


def restore(lab: lab_mod.Lab) -> None:
    """Re-apply provision/sql: routines, views, triggers and grants come back as designed."""
    with lab.admin() as conn:
        schema.apply(conn, account_host=ACCOUNT_HOST)


@contextmanager
def broken(lab: lab_mod.Lab) -> Iterator[Runner]:
    """A runner whose damage is repaired when the block ends, whatever happened in it."""
    try:
        yield runner(lab)
    finally:
        restore(lab)
