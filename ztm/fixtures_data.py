"""Pytest fixtures for the data controls (registered by ztm.plugin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
# the privilege is refused at once (1142), while a wrongly privileged one waits and times
# out (1205, after lock_wait_timeout) instead of destroying anything.
ER_LOCK_WAIT_TIMEOUT = 1205
PROBE_LOCK_WAIT_S = 2


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


def fence_holds(prober: pymysql.connections.Connection, table: str) -> tuple[bool, tuple[int, str] | None]:
    """Self-test of a fence, harmless either way: LOCK TABLES ... WRITE needs a lock that
    conflicts with the fence just like DROP's; it must time out. If it is granted instead,
    it is released at once and the fence is reported as not holding."""
    with prober.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = 1")
    refusal = sql_error(prober, f"LOCK TABLES {table} WRITE")
    if refusal is None:
        sql_error(prober, "UNLOCK TABLES")
    return refusal is not None and refusal[0] == ER_LOCK_WAIT_TIMEOUT, refusal


@pytest.fixture
def fenced(connect) -> Callable[[tuple[str, ...]], Any]:
    """``with fenced(tables):`` destructive probes inside cannot succeed: the fence is held by
    its own admin-path connection and proven to block a conflicting lock before the block runs."""

    @contextmanager
    def fence(tables: tuple[str, ...]) -> Iterator[dict[str, object]]:
        holder, prober = connect("admin"), connect("admin")
        try:
            with metadata_fence(holder, tables):
                checks = {table: fence_holds(prober, table) for table in tables}
                weak = {t: r for t, (held, r) in checks.items() if not held}
                assert not weak, ("the metadata-lock fence does not hold (a conflicting lock was not made to wait), "
                                  f"so destructive probes were not run: {weak}")
                yield {t: r for t, (_, r) in checks.items()}
        finally:
            holder.close()
            prober.close()

    return fence
