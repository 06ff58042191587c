"""ZTM-AUD-4 fails, naming table, key and column, on every route that changes audited data
without a trail event, and passes again once data and trail agree.

Each test breaks the data the way an attacker with the admin's (or the migration account's)
password would, with the lab's anchor paused, and puts the data back the same silent way
before the data plane is re-applied, so the lab stays reconciled for the tests after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest

from provision.netns import ACCOUNT_HOST
from tests.lab import admin_sql
from ztm.db import connect

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

TEST = "test_data_equals_the_replay_of_its_trail"


@pytest.fixture
def data_plane(lab) -> Iterator[admin_sql.Runner]:
    with admin_sql.broken(lab) as run:
        yield run


@pytest.fixture
def account(lab_target, data_plane) -> tuple[str, object]:
    """An account row with its balance; one is opened through the API if the lab has none."""
    rows = data_plane("SELECT account_id, balance FROM accounts ORDER BY account_id LIMIT 1")
    if not rows:
        from envelope.setup import client_for
        from tests.lab.fake_records import writer_accounts

        client = client_for(lab_target)
        try:
            with connect(lab_target, lab_target.roles["app"], database=lab_target.database) as conn, \
                    conn.cursor() as cur:
                writer_accounts(cur, client, lab_target.raw["tenants"]["granted"][0])
        finally:
            client.kms.close()
        rows = data_plane("SELECT account_id, balance FROM accounts ORDER BY account_id LIMIT 1")
    return rows[0][0], rows[0][1]


def _silently(lab, run: admin_sql.Runner, statement: str, args: tuple = (), *, each: list[tuple] | None = None) -> None:
    """Run a statement (once with ``args``, or once per tuple in ``each``) with every audit trigger
    of the data tables dropped, then put the triggers back."""
    for table in ("tenants", "tenant_grants", "users", "accounts"):
        for op in ("insert", "update", "delete"):
            run(f"DROP TRIGGER IF EXISTS {table}_audit_{op}")
    for values in each if each is not None else [args]:
        run(statement, args=values)
    admin_sql.restore(lab)


def test_aud4_passes_on_the_reconciled_lab(control):
    control("ZTM-AUD-4").assert_all_passed()


def test_aud4_fails_when_a_balance_changes_behind_a_dropped_trigger(lab, data_plane, account, control):
    key, balance = account
    _silently(lab, data_plane, "UPDATE accounts SET balance = balance + 1000000 WHERE account_id = %s", args=(key,))
    try:
        run = control("ZTM-AUD-4")
    finally:
        _silently(lab, data_plane, "UPDATE accounts SET balance = %s WHERE account_id = %s", args=(balance, key))
    run.assert_failed(TEST, "differs from its audit trail", "accounts", key, "balance")


def test_aud4_fails_on_a_row_inserted_and_a_row_deleted_without_events(lab, data_plane, control):
    tenant, _ = data_plane("SELECT tenant_id, name FROM tenants ORDER BY tenant_id LIMIT 1")[0]
    ghost = "00000000-0000-4000-8000-00000000a0d4"
    _silently(lab, data_plane, "INSERT INTO tenants (tenant_id, name) VALUES (%s, 'ghost')", args=(ghost,))
    grants = data_plane("SELECT user_name FROM tenant_grants WHERE tenant_id = %s", args=(tenant,))
    try:
        _silently(lab, data_plane, "DELETE FROM tenant_grants WHERE tenant_id = %s", args=(tenant,))
        run = control("ZTM-AUD-4")
    finally:
        _silently(lab, data_plane, "DELETE FROM tenants WHERE tenant_id = %s", args=(ghost,))
        _silently(lab, data_plane, "INSERT INTO tenant_grants (user_name, tenant_id) VALUES (%s, %s)",
                  each=[(user, tenant) for (user,) in grants])
    message = run.assert_failed(TEST, "differs from its audit trail")
    assert f"tenants[{ghost}]" in message and "no INSERT event" in message, message
    assert f"tenant_grants[{grants[0][0]}/{tenant}]" in message and "deleted without an event" in message, message


ALTER_REWRITE = ("ALTER TABLE accounts DROP CONSTRAINT ck_accounts_balance, DROP COLUMN balance, "
                 "ADD COLUMN balance DECIMAL(19,4) NOT NULL DEFAULT 1000000")


def test_migration_holds_no_ddl_so_it_cannot_rewrite_a_column(lab_target):
    with connect(lab_target, lab_target.roles["migration"]) as conn, conn.cursor() as cur, \
            pytest.raises(pymysql.MySQLError) as refused:
        cur.execute(ALTER_REWRITE.replace("accounts", f"`{lab_target.database}`.accounts", 1))
    assert refused.value.args[0] == 1142, f"refused for another reason than privilege: {refused.value.args}"


def test_aud4_and_acc1_fail_when_migration_is_given_alter_and_rewrites_a_column(lab, lab_target, data_plane,
                                                                                 account, control):
    """With ALTER granted back (the admin's password is all it takes), migration's ALTER rebuilds
    the balance column: every balance rewritten, the CHECK constraint gone, no trigger fired."""
    key, _ = account
    saved = data_plane("SELECT account_id, balance FROM accounts")
    data_plane(f"GRANT ALTER ON `{lab_target.database}`.accounts TO 'migration'@'{ACCOUNT_HOST}'")
    try:
        with connect(lab_target, lab_target.roles["migration"], database=lab_target.database) as conn, \
                conn.cursor() as cur:
            cur.execute(ALTER_REWRITE)
        run = control("ZTM-AUD-4")
        acc = control("ZTM-ACC-1")
    finally:
        columns = {r[0] for r in data_plane("SHOW COLUMNS FROM accounts")}
        if "balance" in columns:
            data_plane("ALTER TABLE accounts MODIFY COLUMN balance DECIMAL(19,4) NOT NULL AFTER currency")
        checks = data_plane("SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS WHERE "
                            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'accounts' AND CONSTRAINT_TYPE = 'CHECK'")
        _silently(lab, data_plane, "UPDATE accounts SET balance = %s WHERE account_id = %s",
                  each=[(balance, account_id) for account_id, balance in saved])
        if not any(c[0] == "ck_accounts_balance" for c in checks):
            data_plane("ALTER TABLE accounts ADD CONSTRAINT ck_accounts_balance CHECK (balance >= 0)")
    run.assert_failed(TEST, "accounts", key, "balance", "differ from the last after-image")
    acc.assert_failed("test_login_role_holds_only_its_allowed_grants", "migration", "beyond its role", "ALTER")
