"""What a data-plane session sees of tenancy: its tenant context, the rows its tenant views
show, and (through the admin path) whom the tenants are granted to.

    >>> current_tenant(session)
    'tenant-a'
    >>> visible(session, "v_users", "user_id")
    {'4f0…'}
"""

from __future__ import annotations

from typing import Any

import pymysql

# Views of a session's own tenant and the column that names a row of each.
TENANT_VIEW_KEYS = {"v_users": "user_id", "v_accounts": "account_id"}


def current_tenant(conn: pymysql.connections.Connection) -> str | None:
    """The tenant the session acts for (get_tenant()), None without one."""
    with conn.cursor() as cur:
        cur.execute("SELECT get_tenant()")
        (tenant,) = cur.fetchone()
    return tenant


def visible(conn: pymysql.connections.Connection, view: str, column: str) -> set[str]:
    """The row keys a session sees in one of its tenant views."""
    if TENANT_VIEW_KEYS.get(view) != column:
        raise ValueError(f"not a tenant view key: {view}.{column}")
    with conn.cursor() as cur:
        cur.execute(f"SELECT {column} FROM {view}")  # checked against TENANT_VIEW_KEYS above
        return {row[0] for row in cur.fetchall()}


def key_state(conn: pymysql.connections.Connection, user_id: str) -> tuple[Any, ...] | None:
    """(wrapped key, KMS key id, key version) of a user as the session's tenant view shows it."""
    with conn.cursor() as cur:
        cur.execute("SELECT pii_wrapped_key, pii_kms_key_id, pii_key_version FROM v_users WHERE user_id = %s",
                    (user_id,))
        return cur.fetchone()


def balances(conn: pymysql.connections.Connection) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT account_id, balance FROM v_accounts")
        return dict(cur.fetchall())


def granted_user_names(admin: pymysql.connections.Connection, database: str) -> list[str]:
    """The user names that hold a tenant grant."""
    with admin.cursor() as cur:
        cur.execute(f"SELECT DISTINCT user_name FROM `{database}`.tenant_grants")
        return sorted(row[0] for row in cur.fetchall())
