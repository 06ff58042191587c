"""ZTM-ACC-1, ZTM-TEN-1, ZTM-AUD-1 and ZTM-AUD-2 fail, and say why, when the data plane is
broken the way each exists to catch. Every test restores the data plane afterwards by
re-applying provision/sql (which re-creates routines, views, triggers and grants)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from provision.netns import ACCOUNT_HOST
from tests.lab import admin_sql
from ztm.fixtures_data import ER_LOCK_WAIT_TIMEOUT, fence_holds, metadata_fence, run_fenced, sql_error

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

APP = f"'app_user'@'{ACCOUNT_HOST}'"
MIGRATION = f"'migration'@'{ACCOUNT_HOST}'"
DEFINER = "DEFINER = 'api_definer'@'localhost'"


@pytest.fixture
def data_plane(lab) -> Iterator[admin_sql.Runner]:
    """Admin SQL runner; the data plane is re-applied after the test whatever it broke."""
    with admin_sql.broken(lab) as run:
        yield run


# -- ZTM-ACC-1 -----------------------------------------------------------------------
def test_acc1_fails_when_insert_is_granted_on_a_base_table(data_plane, control):
    data_plane(f"GRANT INSERT ON securedb.users TO {APP}")
    run = control("ZTM-ACC-1")
    run.assert_failed("test_login_role_holds_only_its_allowed_grants", "beyond its role", "INSERT", "users")
    # MySQL lets the no-op INSERT through ("ALLOWED"); MariaDB checks column defaults first (1364):
    # either way the control names the probe and that it was not a privilege refusal.
    run.assert_failed("test_app_account_is_refused_for_lack_of_privilege", "INSERT on base table users")


def test_acc1_fails_when_a_procedure_runs_as_invoker(data_plane, control):
    data_plane("ALTER PROCEDURE securedb.app_transfer SQL SECURITY INVOKER")
    run = control("ZTM-ACC-1")
    run.assert_failed("test_routines_and_views_run_as_a_locked_definer", "app_transfer is SQL SECURITY INVOKER")


def test_acc1_fails_when_a_routine_builds_sql_at_run_time(data_plane, control):
    data_plane(f"CREATE {DEFINER} PROCEDURE securedb.ztm_report(IN p_sql TEXT) SQL SECURITY DEFINER "
               "BEGIN SET @q = p_sql; PREPARE s FROM @q; EXECUTE s; DEALLOCATE PREPARE s; END")
    try:
        run = control("ZTM-ACC-1")
    finally:
        data_plane("DROP PROCEDURE securedb.ztm_report")
    run.assert_failed("test_no_dynamic_sql_in_routine_bodies", "build SQL at run time", "ztm_report")


def test_acc1_fails_when_migration_may_drop_a_data_table(data_plane, control):
    """DROP lets migration TRUNCATE a table (no row trigger fires) or drop it with its audit triggers."""
    data_plane(f"GRANT DROP ON securedb.users TO {MIGRATION}")
    run = control("ZTM-ACC-1")
    run.assert_failed("test_login_role_holds_only_its_allowed_grants", "migration", "beyond its role", "DROP")


# -- ZTM-TEN-1 -----------------------------------------------------------------------
def test_ten1_fails_when_set_tenant_skips_its_grant_check(data_plane, control):
    data_plane("DROP PROCEDURE security_set_tenant",
               f"CREATE {DEFINER} PROCEDURE security_set_tenant(IN p_tenant CHAR(36)) MODIFIES SQL DATA "
               "SQL SECURITY DEFINER BEGIN SET @ztm_tenant_session = RANDOM_BYTES(16); "
               "REPLACE INTO tenant_context (connection_id, login_user, tenant_id, session_key) "
               "VALUES (CONNECTION_ID(), USER(), p_tenant, @ztm_tenant_session); END",
               f"GRANT EXECUTE ON PROCEDURE security_set_tenant TO {APP}")  # DROP took the grant
    run = control("ZTM-TEN-1")
    run.assert_failed("test_ungranted_tenant_is_refused", "accepted a tenant never granted")


def test_ten1_fails_when_the_context_outlives_a_connection_reset(data_plane, control):
    """get_tenant() as it was before session keys: bound to CONNECTION_ID() only, so a pooled
    connection reset between requests keeps the previous request's tenant."""
    data_plane("DROP FUNCTION get_tenant",
               f"CREATE {DEFINER} FUNCTION get_tenant() RETURNS CHAR(36) CHARACTER SET ascii READS SQL DATA "
               "SQL SECURITY DEFINER RETURN (SELECT c.tenant_id FROM tenant_context c JOIN tenant_grants g "
               "ON g.tenant_id = c.tenant_id AND g.user_name = SUBSTRING_INDEX(USER(), '@', 1) "
               "WHERE c.connection_id = CONNECTION_ID() AND c.login_user = USER())",
               f"GRANT EXECUTE ON FUNCTION get_tenant TO {APP}")
    run = control("ZTM-TEN-1")
    run.assert_failed("test_a_reset_connection_has_no_tenant", "after COM_RESET_CONNECTION",
                      "inherits the previous request's tenant")


def test_ten1_fails_when_a_view_loses_its_tenant_filter(data_plane, control):
    data_plane(f"CREATE OR REPLACE {DEFINER} SQL SECURITY DEFINER VIEW v_users AS SELECT * FROM users")
    run = control("ZTM-TEN-1")
    run.assert_failed("test_cross_tenant_reads_are_invisible", "is visible to a session of tenant", "cross-tenant")
    run.assert_failed("test_without_a_tenant_views_are_empty_and_procedures_refuse", "views show rows")


def test_ten1_fails_when_the_context_trusts_a_user_variable(data_plane, control):
    data_plane("DROP FUNCTION get_tenant",
               f"CREATE {DEFINER} FUNCTION get_tenant() RETURNS CHAR(36) CHARACTER SET ascii READS SQL DATA "
               "SQL SECURITY DEFINER RETURN COALESCE(@tenant_id, (SELECT tenant_id FROM tenant_context "
               "WHERE connection_id = CONNECTION_ID()))",
               f"GRANT EXECUTE ON FUNCTION securedb.get_tenant TO {APP}")
    run = control("ZTM-TEN-1")
    run.assert_failed("test_forged_user_variables_change_nothing", "user variables moved the tenant context")


def test_ten1_fails_when_open_account_takes_a_user_of_another_tenant(data_plane, control):
    data_plane("DROP PROCEDURE app_open_account",
               f"CREATE {DEFINER} PROCEDURE app_open_account(IN p_user_id CHAR(36), IN p_currency CHAR(3), "
               "IN p_initial DECIMAL(19, 4)) MODIFIES SQL DATA SQL SECURITY DEFINER BEGIN "
               "DECLARE v_account CHAR(36) CHARACTER SET ascii DEFAULT UUID(); "
               "IF get_tenant() IS NULL THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no tenant context'; END IF; "
               "INSERT INTO accounts (account_id, tenant_id, user_id, currency, balance) "
               "SELECT v_account, tenant_id, user_id, p_currency, p_initial FROM users WHERE user_id = p_user_id; "
               "SELECT v_account AS account_id; END",
               f"GRANT EXECUTE ON PROCEDURE securedb.app_open_account TO {APP}")
    run = control("ZTM-TEN-1")
    run.assert_failed("test_cross_tenant_writes_are_refused_by_every_write_procedure",
                      "app_open_account wrote into tenant B", "cross-tenant write")


def test_ten1_fails_when_the_tenant_grant_ignores_the_identity(data_plane, control):
    data_plane("DROP PROCEDURE security_set_tenant",
               f"CREATE {DEFINER} PROCEDURE security_set_tenant(IN p_tenant CHAR(36)) MODIFIES SQL DATA "
               "SQL SECURITY DEFINER BEGIN "
               "IF NOT EXISTS (SELECT 1 FROM tenant_grants WHERE tenant_id = p_tenant) THEN "
               "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'security_set_tenant: tenant not granted'; END IF; "
               "SET @ztm_tenant_session = RANDOM_BYTES(16); "
               "REPLACE INTO tenant_context (connection_id, login_user, tenant_id, session_key) "
               "VALUES (CONNECTION_ID(), USER(), p_tenant, @ztm_tenant_session); END",
               f"GRANT EXECUTE ON PROCEDURE security_set_tenant TO {APP}",
               f"GRANT EXECUTE ON PROCEDURE security_set_tenant TO 'auditor'@'{ACCOUNT_HOST}'")
    run = control("ZTM-TEN-1")
    run.assert_failed("test_tenant_grant_follows_the_identity", "accepted for app_user", "ignores the identity")


def test_ten1_fails_when_an_anonymous_account_exists(lab, control):
    run_sql = admin_sql.runner(lab)
    run_sql("CREATE USER ''@%s IDENTIFIED BY %s REQUIRE X509", args=(ACCOUNT_HOST, secrets.token_hex(16)))
    try:
        run = control("ZTM-TEN-1")
    finally:
        run_sql(f"DROP USER ''@'{ACCOUNT_HOST}'")
    run.assert_failed("test_tenant_grants_name_one_account_each", "anonymous account", "claim that name's tenants")


# -- ZTM-AUD-1 -----------------------------------------------------------------------
def test_aud1_fails_when_the_delete_guard_is_dropped(data_plane, control):
    data_plane("DROP TRIGGER audit_events_guard_delete")
    run = control("ZTM-AUD-1")
    run.assert_failed("test_guard_triggers_exist_with_the_expected_definer", "no BEFORE DELETE trigger on audit_events")
    run.assert_failed("test_guards_refuse_even_a_privileged_writer", "no trigger refused DELETE")


def test_aud1_fails_when_a_data_trigger_stops_recording_updates(data_plane, control):
    """The trigger still exists, is owned by the definer and even mentions audit_append: only
    behaviour shows it no longer records what a transfer changes."""
    data_plane("DROP TRIGGER accounts_audit_update",
               f"CREATE {DEFINER} TRIGGER accounts_audit_update AFTER UPDATE ON accounts FOR EACH ROW "
               "SET @ztm_not_recorded = 'audit_append(' ")
    run = control("ZTM-AUD-1")
    run.assert_failed("test_every_write_procedure_appends_exactly_its_events",
                      "did not append exactly their events", "UPDATE")


def test_aud1_fails_when_migration_may_delete_audit_rows(data_plane, control):
    data_plane(f"GRANT DELETE ON securedb.audit_events TO {MIGRATION}")
    run = control("ZTM-AUD-1")
    run.assert_failed("test_login_accounts_are_refused_changes_to_audit_tables", "migration",
                      "DELETE audit_events: ALLOWED")
    run.assert_failed("test_no_account_but_the_admin_can_change_the_audit_tables", "DELETE via GRANT DELETE",
                      "migration")


def test_aud1_fails_when_migration_may_truncate_the_audit_table_and_the_fence_saves_it(data_plane, control):
    (before,) = data_plane("SELECT COUNT(*) FROM audit_events")[0]
    data_plane(f"GRANT DROP ON securedb.audit_events TO {MIGRATION}")
    run = control("ZTM-AUD-1")
    run.assert_failed("test_login_accounts_are_refused_changes_to_audit_tables", "migration",
                      "TRUNCATE audit_events: ALLOWED by privileges (it waited for the fence",
                      "DROP audit_events: ALLOWED by privileges")
    run.assert_failed("test_no_account_but_the_admin_can_change_the_audit_tables", "DROP via GRANT DROP")
    (after,) = data_plane("SELECT COUNT(*) FROM audit_events")[0]
    assert after >= before, "the audit table lost rows: the fence did not stop the probe's TRUNCATE"


def test_aud1_fails_when_a_role_of_the_app_may_update_audit_rows(data_plane, control, lab_target):
    role = "'ztm_sneaky'@'%'" if lab_target.dialect.role_has_host else "ztm_sneaky"
    data_plane(f"CREATE ROLE {role}", f"GRANT UPDATE ON securedb.audit_events TO {role}", f"GRANT {role} TO {APP}")
    try:
        run = control("ZTM-AUD-1")
    finally:
        data_plane(f"DROP ROLE {role}")
    run.assert_failed("test_no_account_but_the_admin_can_change_the_audit_tables", "app_user",
                      "UPDATE via GRANT UPDATE", "held by", "ztm_sneaky")


def test_aud1_fails_when_every_account_may_delete_audit_rows(data_plane, control, lab_target):
    """PUBLIC (MariaDB 10.11) or a mandatory role (MySQL): granted to every account at once."""
    if lab_target.dialect.public_role:
        grant, undo, shown = ["GRANT DELETE ON securedb.audit_events TO PUBLIC"], [
            "REVOKE DELETE ON securedb.audit_events FROM PUBLIC"], "(held by PUBLIC)"
    else:
        grant = ["CREATE ROLE 'ztm_everyone'@'%'", "GRANT DELETE ON securedb.audit_events TO 'ztm_everyone'@'%'",
                 "SET GLOBAL mandatory_roles = 'ztm_everyone@%'"]
        undo, shown = ["SET GLOBAL mandatory_roles = ''", "DROP ROLE 'ztm_everyone'@'%'"], "ztm_everyone"
    data_plane(*grant)
    try:
        run = control("ZTM-AUD-1")
    finally:
        data_plane(*undo)
    run.assert_failed("test_no_account_but_the_admin_can_change_the_audit_tables", "DELETE", shown, "auditor")


def test_aud1_fails_when_grants_cannot_be_read(data_plane, control, lab_target):
    if lab_target.dialect.mandatory_roles_variable is None:
        pytest.skip("MariaDB ignores a role grant whose role does not exist, so it shows no grant it cannot "
                    "read; this case exists on MySQL (mandatory_roles naming a missing role)")
    data_plane("SET GLOBAL mandatory_roles = 'ztm_missing_role@%'")
    try:
        run = control("ZTM-AUD-1")
    finally:
        data_plane("SET GLOBAL mandatory_roles = ''")
    run.assert_failed("test_no_account_but_the_admin_can_change_the_audit_tables", "could not be read",
                      "ztm_missing_role")


def test_aud1_fails_when_a_data_table_loses_an_audit_trigger(data_plane, control):
    data_plane("DROP TRIGGER accounts_audit_update")
    run = control("ZTM-AUD-1")
    run.assert_failed("test_every_data_table_logs_every_change", "no AFTER UPDATE audit trigger on accounts")


def test_aud1_fails_when_a_new_data_table_has_no_audit_triggers(data_plane, control):
    data_plane("CREATE TABLE ztm_unaudited (id INT PRIMARY KEY) ENGINE = InnoDB")
    try:
        run = control("ZTM-AUD-1")
    finally:
        data_plane("DROP TABLE ztm_unaudited")
    run.assert_failed("test_every_data_table_logs_every_change", "no AFTER INSERT audit trigger on ztm_unaudited",
                      "no AFTER DELETE audit trigger on ztm_unaudited")


def test_the_fence_makes_a_privileged_drop_wait_and_time_out(lab, data_plane):
    """The fence AUD-1 probes behind, on a scratch table: the admin (who may drop anything)
    is made to wait and time out; the same DROP without the fence succeeds (differential)."""
    data_plane("CREATE TABLE ztm_fence_probe (id INT PRIMARY KEY) ENGINE = InnoDB")
    try:
        with lab.admin() as holder, lab.admin() as dropper:
            with dropper.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 2")
            with metadata_fence(holder, ("securedb.ztm_fence_probe",)):
                started = time.monotonic()
                held, proof = fence_holds(dropper, "securedb.ztm_fence_probe", holder)
                fenced_drop = run_fenced(holder, dropper, "DROP TABLE securedb.ztm_fence_probe")
                fenced_truncate = run_fenced(holder, dropper, "TRUNCATE TABLE securedb.ztm_fence_probe")
                watched_s = time.monotonic() - started
                timed_out = sql_error(dropper, "DROP TABLE securedb.ztm_fence_probe")  # no watcher: the backstop
            survived = data_plane("SHOW TABLES LIKE 'ztm_fence_probe'")
            assert not fence_holds(dropper, "securedb.ztm_fence_probe")[0], "the self-test passes without a fence"
            unfenced_drop = sql_error(dropper, "DROP TABLE securedb.ztm_fence_probe")
    finally:
        data_plane("DROP TABLE IF EXISTS ztm_fence_probe")
    assert held, f"the fence self-test did not see its lock wait: {proof}"
    assert fenced_drop is not None and fenced_drop[0] == ER_LOCK_WAIT_TIMEOUT, fenced_drop
    assert fenced_truncate is not None and fenced_truncate[0] == ER_LOCK_WAIT_TIMEOUT, fenced_truncate
    assert "fence's lock" in fenced_drop[1], f"the wait was not seen by the watcher: {fenced_drop}"
    assert watched_s < 1.0, f"three fenced waits took {watched_s:.2f} s: the watcher did not stop them"
    assert timed_out is not None and timed_out[0] == ER_LOCK_WAIT_TIMEOUT, timed_out
    assert survived, "the table was dropped behind the fence"
    assert unfenced_drop is None, f"without the fence the DROP failed too ({unfenced_drop}): the probe shows nothing"


# -- ZTM-AUD-2 -----------------------------------------------------------------------
def _middle_row(data_plane) -> tuple[int, int]:
    """(lane, seq) of a middle event of the busiest lane."""
    lane, head = data_plane("SELECT lane, seq FROM audit_chain_head ORDER BY seq DESC LIMIT 1")[0]
    assert head and head >= 3, "the lab audit trail needs a few events in one lane for this test"
    return lane, head // 2


def test_aud2_fails_when_one_payload_byte_is_changed(data_plane, control):
    lane, seq = _middle_row(data_plane)
    (original,) = data_plane("SELECT payload FROM audit_events WHERE lane = %s AND seq = %s", args=(lane, seq))[0]
    tampered = original[:30] + ("X" if original[30] != "X" else "Y") + original[31:]
    data_plane("DROP TRIGGER audit_events_guard_update",
               "UPDATE audit_events SET payload = %s WHERE lane = %s AND seq = %s", args=(tampered, lane, seq))
    try:
        run = control("ZTM-AUD-2")
    finally:
        data_plane("UPDATE audit_events SET payload = %s WHERE lane = %s AND seq = %s", args=(original, lane, seq))
    run.assert_failed("test_full_chain_recomputes_to_the_head", f"lane {lane}: audit chain broken at seq {seq}",
                      "hash mismatch")


def test_aud2_fails_when_a_middle_row_is_deleted(data_plane, control):
    lane, seq = _middle_row(data_plane)
    row = data_plane("SELECT lane, seq, payload, prev_hash, curr_hash FROM audit_events WHERE lane = %s AND seq = %s",
                     args=(lane, seq))[0]
    data_plane("DROP TRIGGER audit_events_guard_delete", "DELETE FROM audit_events WHERE lane = %s AND seq = %s",
               args=(lane, seq))
    try:
        run = control("ZTM-AUD-2")
    finally:
        data_plane("DROP TRIGGER audit_events_guard_insert",
                   "INSERT INTO audit_events (lane, seq, payload, prev_hash, curr_hash) VALUES (%s, %s, %s, %s, %s)",
                   args=row)
    run.assert_failed("test_full_chain_recomputes_to_the_head", f"lane {lane}: audit chain broken at seq {seq}", "gap")


def test_aud2_fails_when_a_lane_head_is_rewound(data_plane, control):
    """A lane-specific break: one lane's head row moved back one event (its newest row kept)."""
    lane, seq = data_plane("SELECT lane, seq FROM audit_chain_head ORDER BY seq DESC LIMIT 1")[0]
    (prev,) = data_plane("SELECT curr_hash FROM audit_events WHERE lane = %s AND seq = %s", args=(lane, seq - 1))[0]
    (head,) = data_plane("SELECT head_hash FROM audit_chain_head WHERE lane = %s", args=(lane,))[0]
    data_plane("DROP TRIGGER audit_chain_head_guard_update",
               "UPDATE audit_chain_head SET seq = %s, head_hash = %s WHERE lane = %s", args=(seq - 1, prev, lane))
    try:
        run = control("ZTM-AUD-2")
    finally:
        data_plane("UPDATE audit_chain_head SET seq = %s, head_hash = %s WHERE lane = %s", args=(seq, head, lane))
    run.assert_failed("test_full_chain_recomputes_to_the_head", f"lane {lane}: audit chain broken at seq {seq}",
                      "head mismatch")
