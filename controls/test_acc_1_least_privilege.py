"""ZTM-ACC-1: the app account writes only through vetted procedures; least privilege.

Grants: every grant of the login roles is one of the few the design allows (app: EXECUTE
on the API, SELECT on the tenant views). Behaviour: as app_user, direct reads and writes
of base tables, DDL, CREATE ROUTINE, FILE and SUPER-class operations are each refused
*for lack of privilege* (the error names the denied command), while the same session can
use the API, so the refusal is not a broken login. Every probe is harmless if it were
allowed (WHERE 1 = 0, absent objects, no-op values). Routines and views run as a locked
definer with SQL SECURITY DEFINER and build no SQL at run time.
"""

from __future__ import annotations

import re

import pytest

from ztm.checks.grants import parse
from ztm.data_plane import ALLOWED_GRANTS, DATABASE, DEFINER_HOST, DEFINER_USER
from ztm.fixtures_data import sql_error

pytestmark = pytest.mark.control("ZTM-ACC-1")

TABLE_DENIED, DB_DENIED, PRIVILEGE_DENIED = 1142, 1044, 1227
# (what is probed, SQL, the error that proves a privilege refusal, what its message must name)
APP_PROBES = [
    ("SELECT on base table users", "SELECT 1 FROM securedb.users LIMIT 0", TABLE_DENIED, "SELECT command denied"),
    ("INSERT on base table users", "INSERT INTO securedb.users (user_id) SELECT 'x' FROM DUAL WHERE 1 = 0",
     TABLE_DENIED, "INSERT command denied"),
    ("UPDATE on base table accounts", "UPDATE securedb.accounts SET balance = balance WHERE 1 = 0", TABLE_DENIED,
     "UPDATE command denied"),
    ("DELETE on base table accounts", "DELETE FROM securedb.accounts WHERE 1 = 0", TABLE_DENIED,
     "DELETE command denied"),
    ("DDL CREATE TABLE", "CREATE TABLE securedb.users (a INT)", TABLE_DENIED, "CREATE command denied"),
    ("DDL ALTER TABLE", "ALTER TABLE securedb.users RENAME COLUMN ztm_absent_column TO ztm_other", TABLE_DENIED,
     "ALTER command denied"),
    ("DDL DROP TABLE", "DROP TABLE securedb.ztm_absent_table", TABLE_DENIED, "DROP command denied"),
    ("CREATE ROUTINE", "CREATE PROCEDURE securedb.app_transfer() BEGIN END", DB_DENIED, "to database 'securedb'"),
    ("FILE (SELECT ... INTO OUTFILE)", "SELECT 1 INTO OUTFILE '/nonexistent-ztm-dir/probe'", PRIVILEGE_DENIED, "FILE"),
    ("SUPER-class (SET GLOBAL)", "SET GLOBAL max_connections = @@global.max_connections", PRIVILEGE_DENIED, "SUPER"),
]
DYNAMIC_SQL = re.compile(r"\b(PREPARE|DEALLOCATE\s+PREPARE|EXECUTE\s+(?!ON\b)\w+)\b", re.IGNORECASE)


@pytest.mark.parametrize("role", sorted(ALLOWED_GRANTS))
def test_login_role_holds_only_its_allowed_grants(role, admin, account_of, evidence):
    account = account_of(role)
    lines = _grants(admin, account)
    evidence.json("grants", {"account": account.name, "grants": lines})
    allowed = ALLOWED_GRANTS[role]
    extra = sorted({g.line.split(" TO ")[0] for g in parse(lines)
                    if g.privilege != "USAGE" and not (g.database == DATABASE
                                                       and (g.privilege, g.kind, g.object) in allowed)})
    assert not extra, f"{account.name} ({role}) holds grants beyond its role: " + "; ".join(extra)


@pytest.mark.parametrize(("what", "sql", "errno", "named"), APP_PROBES, ids=[p[0] for p in APP_PROBES])
def test_app_account_is_refused_for_lack_of_privilege(what, sql, errno, named, session, evidence):
    conn = session("app")
    baseline = sql_error(conn, "SELECT securedb.get_tenant()")
    assert baseline is None, f"app_user cannot even use its API ({baseline}); denials would prove nothing"
    refusal = sql_error(conn, sql)
    evidence.json("probe", {"probe": what, "sql": sql, "refusal": refusal})
    assert refusal is not None, f"app_user was ALLOWED {what}: {sql}"
    assert refusal[0] == errno and named in refusal[1], (
        f"{what} failed with error {refusal[0]} ({refusal[1]}), not with the privilege refusal {errno} naming "
        f"{named!r}: the account may hold the privilege")


def test_routines_and_views_run_as_a_locked_definer(admin, accounts, evidence):
    with admin.cursor() as cur:
        cur.execute("SELECT ROUTINE_TYPE, ROUTINE_NAME, SECURITY_TYPE, DEFINER FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_NAME", (DATABASE,))
        routines = cur.fetchall()
        cur.execute("SELECT TABLE_NAME, SECURITY_TYPE, DEFINER FROM information_schema.VIEWS "
                    "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME", (DATABASE,))
        views = cur.fetchall()
    evidence.json("definers", {"routines": routines, "views": views})
    definer = f"{DEFINER_USER}@{DEFINER_HOST}"
    assert routines, f"no routines in {DATABASE}: the procedure API is not installed"
    problems = [f"{kind.lower()} {name} is SQL SECURITY {security}" for kind, name, security, _ in routines
                if security != "DEFINER"]
    problems += [f"{kind.lower()} {name} is owned by {owner}" for kind, name, _, owner in routines if owner != definer]
    problems += [f"view {name} is SQL SECURITY {security}" for name, security, _ in views if security != "DEFINER"]
    problems += [f"view {name} is owned by {owner}" for name, _, owner in views if owner != definer]
    owner = [a for a in accounts if a.user == DEFINER_USER and a.host == DEFINER_HOST]
    if not owner:
        problems.append(f"the definer account {definer} does not exist")
    elif not owner[0].locked:
        problems.append(f"the definer account {definer} is not locked: anyone with its password holds its rights")
    assert not problems, "routines and views must run as the locked definer: " + "; ".join(problems)


def test_no_dynamic_sql_in_routine_bodies(admin, evidence):
    with admin.cursor() as cur:
        cur.execute("SELECT ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA = %s", (DATABASE,))
        bodies = {name: body or "" for name, body in cur.fetchall()}
    found = {name: DYNAMIC_SQL.search(body).group(0) for name, body in bodies.items() if DYNAMIC_SQL.search(body)}
    evidence.json("dynamic-sql-scan", {"routines": sorted(bodies), "found": found})
    assert bodies, "no routine bodies visible to the admin path"
    assert not found, "routines build SQL at run time (injection risk): " + ", ".join(
        f"{name} ({what})" for name, what in sorted(found.items()))


def _grants(admin, account) -> list[str]:
    from ztm.checks.accounts import grants_for

    return grants_for(admin, account.user, account.host)
