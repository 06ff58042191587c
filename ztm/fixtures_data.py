"""Pytest fixtures for the data controls (registered by ztm.plugin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from ztm.checks.accounts import Account, list_accounts
from ztm.data_plane import DATABASE


@pytest.fixture(scope="session")
def tenants(target) -> dict[str, Any]:
    """The assessment tenants of the target ([tenants]: two granted, one never granted)."""
    section = target.section("tenants")
    if not section:
        pytest.skip("the target names no assessment tenants ([tenants] granted/ungranted); tenant isolation "
                    "cannot be probed without tenants set aside for it")
    return {"A": section["granted"][0], "B": section["granted"][1], "ungranted": section["ungranted"]}


@pytest.fixture(scope="session")
def accounts(target, admin) -> list[Account]:
    return list_accounts(admin, target.dialect)


@pytest.fixture(scope="session")
def account_of(target, accounts) -> Callable[[str], Account]:
    """The server account a target role logs in as (found by its user name)."""

    def find(role: str) -> Account:
        user = target.roles[role].user
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
        conn = connect(target, target.roles[role], database=DATABASE)
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
