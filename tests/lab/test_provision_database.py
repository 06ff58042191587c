"""`ztm provision database` against the lab server, as an operator would run it on a VM.

Running it twice changes nothing the second time (accounts, bindings, grants, routines and
triggers read back identical); an account that is missing is created bound to its
certificate; the admin it connects as survives even when it is a root reachable over TCP,
which the installer otherwise drops.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest
import tomli_w

from provision import lab as lab_mod
from provision.netns import ACCOUNT_HOST
from tests.lab import admin_sql
from ztm.audit_chain import verify_database
from ztm.cli import main as ztm_main
from ztm.db import connect, try_login
from ztm.resources.accounts import grants_for, list_accounts
from ztm.resources.grants import parse
from ztm.target import load_target

pytestmark = pytest.mark.lab
OTHER_ROOT_HOST = "192.0.2.1"  # TEST-NET-1: an account definition only, never contacted


@pytest.fixture(autouse=True)
def quiet_anchor(lab):
    """The installer re-creates the guard triggers; the lab's anchor must not catch them half-done."""
    with admin_sql.anchor_paused(lab):
        yield


def _provision(target_file, capsys) -> str:
    code = ztm_main(["provision", "database", "--target", str(target_file), "--account-host", ACCOUNT_HOST])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _deployment(lab_target) -> dict[str, object]:
    """Everything the installer asserts, as read back from the server."""
    admin = connect(lab_target, lab_target.roles["admin"])
    try:
        accounts = [a.to_dict() for a in list_accounts(admin, lab_target.dialect)]
        grants = {role: grants_for(admin, lab_target.roles[role].user, ACCOUNT_HOST)
                  for role in ("app", "auditor", "migration", "probe")}
        with admin.cursor() as cur:
            cur.execute("SELECT ROUTINE_NAME, ROUTINE_DEFINITION, SECURITY_TYPE, DEFINER FROM "
                        "information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'securedb' ORDER BY ROUTINE_NAME")
            routines = hashlib.sha256(repr(cur.fetchall()).encode()).hexdigest()
            cur.execute("SELECT TRIGGER_NAME, ACTION_STATEMENT, DEFINER FROM information_schema.TRIGGERS "
                        "WHERE TRIGGER_SCHEMA = 'securedb' ORDER BY TRIGGER_NAME")
            triggers = hashlib.sha256(repr(cur.fetchall()).encode()).hexdigest()
            cur.execute("SELECT user_name, tenant_id FROM securedb.tenant_grants ORDER BY 1, 2")
            tenant_grants = cur.fetchall()
    finally:
        admin.close()
    return {"accounts": accounts, "grants": grants, "routines": routines, "triggers": triggers,
            "tenant_grants": tenant_grants}


def test_provisioning_twice_changes_nothing(lab, lab_target, capsys):
    try:
        first = _provision(lab.target_file, capsys)
        after_first = _deployment(lab_target)
        second = _provision(lab.target_file, capsys)
        after_second = _deployment(lab_target)
    finally:
        admin_sql.restore(lab)
    assert "accounts bound to certificates: app_user@" in first and "default accounts dropped: none" in second
    assert after_first == after_second
    conn = connect(lab_target, lab_target.roles["auditor"])
    try:
        report = verify_database(conn)
    finally:
        conn.close()
    assert report.intact, report.describe()


def test_a_missing_account_is_created_bound_to_its_certificate(lab, lab_target, capsys):
    migration = lab_target.roles["migration"]
    admin_sql.runner(lab)(f"DROP USER '{migration.user}'@'{ACCOUNT_HOST}'")
    gone = try_login(lab_target, migration)
    try:
        _provision(lab.target_file, capsys)
    finally:
        back = try_login(lab_target, migration)
        if not back.accepted:  # leave the lab whole for the tests after this one
            lab_mod._bootstrap_accounts(lab)
    with lab.admin() as admin:
        account = [a for a in list_accounts(admin, lab_target.dialect)
                   if (a.user, a.host) == (migration.user, ACCOUNT_HOST)]
        grants = parse(grants_for(admin, migration.user, ACCOUNT_HOST))
    assert not gone.accepted, "the probe did not remove the account"
    assert back.accepted, f"the recreated migration account cannot log in with its certificate: {back.message}"
    assert account and account[0].ssl_type == "SPECIFIED" and "CN=migration" in account[0].x509_subject
    held = {g.privilege for g in grants} - {"USAGE"}
    assert not held, f"the migration account holds standing privileges {sorted(held)}: no login account holds DDL"


def test_the_admin_it_connects_as_is_never_dropped(lab, lab_target, tmp_path, capsys):
    """A root reachable over TCP is a default account the installer drops, unless it is the
    very account the installer runs as."""
    password = secrets.token_hex(16)
    run = admin_sql.runner(lab)
    run("CREATE USER 'root'@%s IDENTIFIED BY %s", args=(ACCOUNT_HOST, password))
    run("GRANT ALL PRIVILEGES ON *.* TO 'root'@%s WITH GRANT OPTION", args=(ACCOUNT_HOST,))
    run("CREATE USER 'root'@%s IDENTIFIED BY %s", args=(OTHER_ROOT_HOST, secrets.token_hex(16)))  # must go
    secret = tmp_path / "tcp-root.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    doc = dict(lab_target.raw)
    doc["roles"] = {**doc["roles"], "admin": {"user": "root", "password": {"file": str(secret)}}}
    tcp_target = tmp_path / "target.toml"
    tcp_target.write_text(tomli_w.dumps(doc))
    try:
        _provision(tcp_target, capsys)
        survived = try_login(load_target(tcp_target), load_target(tcp_target).roles["admin"])
        with lab.admin() as admin:
            remaining = [a.host for a in list_accounts(admin, lab_target.dialect) if a.user == "root"]
    finally:
        run("DROP USER IF EXISTS 'root'@%s", args=(ACCOUNT_HOST,))
        run("DROP USER IF EXISTS 'root'@%s", args=(OTHER_ROOT_HOST,))
        admin_sql.restore(lab)
    assert survived.accepted, f"the installer locked its own admin out: {survived.message}"
    assert ACCOUNT_HOST in remaining
    assert OTHER_ROOT_HOST not in remaining, "the other root reachable over TCP was not dropped"


@pytest.mark.parametrize(("args", "said"), [
    (["--account-host", "10.0.0.%' OR '1"], "is not a host pattern"),
    (["--account-host", "localhost"], "is not a host pattern"),
])
def test_bad_input_is_one_line_and_exit_2(lab, args, said, capsys):
    code = ztm_main(["provision", "database", "--target", str(lab.target_file), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and said in err[0], err


def test_reprovisioning_leaves_live_sessions_their_tenant(lab, lab_target, tmp_path, capsys):
    """The installer never empties tenant_context (only the server's start does, through the
    init file it can write): a live, pooled session keeps acting for its tenant across a
    re-run of 'ztm provision database'."""
    tenant = lab_target.raw["tenants"]["granted"][0]
    live = connect(lab_target, lab_target.roles["app"], database=lab_target.database)
    init_file = tmp_path / "ztm-init.sql"
    try:
        with live.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
        try:
            assert ztm_main(["provision", "database", "--target", str(lab.target_file), "--account-host",
                             ACCOUNT_HOST, "--init-file", str(init_file)]) == 0
        finally:
            admin_sql.restore(lab)
        with live.cursor() as cur:
            cur.execute("SELECT get_tenant()")
            (kept,) = cur.fetchone()
    finally:
        live.close()
    said = capsys.readouterr().out
    assert kept == tenant, f"re-provisioning took the live session's tenant away (now {kept})"
    assert f"DELETE FROM {lab_target.database}.tenant_context" in init_file.read_text()
    assert oct(init_file.stat().st_mode & 0o777) == "0o640" and "init_file = " in said, said
