"""Pytest fixtures for the data controls (registered by ztm.plugin)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest

from ztm.resources.accounts import Account, list_accounts


@pytest.fixture(scope="session")
def tenants(target) -> dict[str, Any]:
    """The assessment tenants of the target ([tenants]: two granted, one never granted, and
    optionally one granted to the auditor only)."""
    section = target.section("tenants")
    if not section:
        pytest.skip("the target names no assessment tenants ([tenants] granted/ungranted); tenant isolation "
                    "cannot be probed without tenants set aside for it")
    return {"A": section["granted"][0], "B": section["granted"][1], "ungranted": section["ungranted"],
            "auditor_only": section.get("auditor_only")}


@pytest.fixture(scope="session")
def accounts(target, admin) -> list[Account]:
    return list_accounts(admin, target.dialect)


@pytest.fixture(scope="session")
def account_of(target, accounts) -> Callable[[str], Account]:
    """The server account a target role logs in as (found by its user name)."""

    def find(role: str) -> Account:
        user = target.role(role).user
        matches = [a for a in accounts if a.user == user and not a.socket_only]
        assert matches, f"no network account for role {role} ({user}) on the server"
        return matches[0]

    return find


@pytest.fixture
def session(target) -> Iterator[Callable[..., pymysql.connections.Connection]]:
    """``session(role, tenant=None)``: a fresh mTLS connection to the data plane, optionally
    with its tenant set. Closed at the end of the test."""
    from ztm.db import connect

    opened: list[pymysql.connections.Connection] = []

    def open_session(role: str = "app", tenant: str | None = None) -> pymysql.connections.Connection:
        conn = connect(target, target.role(role), database=target.database)
        opened.append(conn)
        if tenant is not None:
            with conn.cursor() as cur:
                cur.execute("CALL security_set_tenant(%s)", (tenant,))
        return conn

    yield open_session
    for conn in opened:
        if conn.open:
            conn.close()


def sql_error(conn: pymysql.connections.Connection, sql: str, args: Any = None) -> tuple[int, str] | None:
    """Run ``sql``; return (errno, message) if the server refused it, None if it succeeded."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            while cur.nextset():
                pass
    except pymysql.MySQLError as exc:
        return (exc.args[0], str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    return None


# -- The metadata-lock fence for destructive probes ----------------------------------------
# TRUNCATE, DROP, ALTER and CREATE TRIGGER need an exclusive metadata lock on their table;
# an open transaction that has read the table holds a shared one until it ends. The server
# checks privileges *before* it waits for the lock, so under the fence an account without
# the privilege is refused at once (1142), while a wrongly privileged one waits instead of
# destroying anything. The wait is seen in the process list by a watcher on the admin path,
# which stops the statement at once (KILL QUERY): milliseconds, not a lock_wait_timeout.
# The session's lock_wait_timeout stays as the backstop should the watcher miss it.
ER_LOCK_WAIT_TIMEOUT = 1205
ER_QUERY_INTERRUPTED = 1317
PROBE_LOCK_WAIT_S = 2
WAIT_STATE = "metadata lock"  # "Waiting for table metadata lock" on MariaDB and MySQL
POLL_S = 0.003


@contextmanager
def metadata_fence(conn: pymysql.connections.Connection, tables: tuple[str, ...]) -> Iterator[None]:
    """Hold a shared metadata lock on every ``database.table`` until the block ends."""
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION READ ONLY")
        for table in tables:
            cur.execute(f"SELECT 1 FROM {table} LIMIT 1")  # names come from the data-plane module
            cur.fetchall()
    try:
        yield
    finally:
        if conn.open:
            conn.rollback()


def _state(watcher: pymysql.connections.Connection, thread_id: int) -> str:
    with watcher.cursor() as cur:
        cur.execute("SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,))
        row = cur.fetchone()
    return (row[0] or "") if row else ""


def run_fenced(watcher: pymysql.connections.Connection, prober: pymysql.connections.Connection, sql: str,
               args: Any = None, *, limit_s: float = PROBE_LOCK_WAIT_S) -> tuple[int, str] | None:
    """Run ``sql`` on ``prober`` behind a fence: its result, or (1205, why) once the watcher
    has seen it wait for the fence's metadata lock and stopped it."""
    thread_id = prober.thread_id()
    done: dict[str, tuple[int, str] | None] = {}
    worker = threading.Thread(target=lambda: done.setdefault("result", sql_error(prober, sql, args)), daemon=True)
    worker.start()
    seen, deadline = "", time.monotonic() + limit_s
    while worker.is_alive() and time.monotonic() < deadline:
        state = _state(watcher, thread_id)
        if WAIT_STATE in state.lower():
            seen = state
            sql_error(watcher, f"KILL QUERY {int(thread_id)}")
            break
        worker.join(POLL_S)
    worker.join()  # bounded by the prober's lock_wait_timeout
    result = done.get("result")
    if seen and result is not None and result[0] in (ER_QUERY_INTERRUPTED, ER_LOCK_WAIT_TIMEOUT):
        return (ER_LOCK_WAIT_TIMEOUT, f"waited for the fence's lock (process list: {seen!r}), then stopped")
    return result


def fence_holds(prober: pymysql.connections.Connection, table: str,
                watcher: pymysql.connections.Connection | None = None) -> tuple[bool, tuple[int, str] | None]:
    """Self-test of a fence, harmless either way: LOCK TABLES ... WRITE needs a lock that
    conflicts with the fence just like DROP's; it must wait (seen by ``watcher``, or time out
    without one). If it is granted instead, it is released at once and the fence is reported
    as not holding."""
    with prober.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = 1")
    sql = f"LOCK TABLES {table} WRITE"
    refusal = run_fenced(watcher, prober, sql) if watcher is not None else sql_error(prober, sql)
    if refusal is None:
        sql_error(prober, "UNLOCK TABLES")
    return refusal is not None and refusal[0] == ER_LOCK_WAIT_TIMEOUT, refusal


@dataclass
class Fence:
    """A held fence: ``proof`` (the self-test per table) and ``run(conn, sql)`` for a probe."""

    proof: dict[str, object]
    watcher: pymysql.connections.Connection

    def run(self, conn: pymysql.connections.Connection, sql: str, args: Any = None) -> tuple[int, str] | None:
        return run_fenced(self.watcher, conn, sql, args)


@pytest.fixture
def fenced(connect) -> Callable[[tuple[str, ...]], Any]:
    """``with fenced(tables) as fence:`` destructive probes run through ``fence.run`` cannot
    succeed: the fence is held by its own admin-path connection and proven to block a
    conflicting lock before the block runs."""

    @contextmanager
    def fence(tables: tuple[str, ...]) -> Iterator[Fence]:
        holder, prober = connect("admin"), connect("admin")
        try:
            with metadata_fence(holder, tables):
                checks = {table: fence_holds(prober, table, holder) for table in tables}
                weak = {t: r for t, (held, r) in checks.items() if not held}
                assert not weak, ("the metadata-lock fence does not hold (a conflicting lock was not made to wait), "
                                  f"so destructive probes were not run: {weak}")
                yield Fence({t: r for t, (_, r) in checks.items()}, prober)
        finally:
            holder.close()
            prober.close()

    return fence
