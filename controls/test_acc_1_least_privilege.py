"""ZTM-ACC-1: the app account writes only through vetted procedures; least privilege.

Grants: every grant of the login roles is one of the few the policy allows (grants.allowed;
zero-trust: app EXECUTE on the API and SELECT on the tenant views). Behaviour: as app_user, direct reads and writes
of base tables, DDL, CREATE ROUTINE, FILE and SUPER-class operations are each refused
*for lack of privilege* (the error names the denied command), while the same session can
use the API, so the refusal is not a broken login. Every probe is harmless if it were
allowed (WHERE 1 = 0, absent objects, no-op values). Routines and views run as a locked
definer with SQL SECURITY DEFINER and build no SQL at run time.
"""

from __future__ import annotations

import re

import pytest

from ztm.data_plane import DEFINER, DEFINER_HOST, DEFINER_USER, LOGIN_ROLES
from ztm.fixtures_data import sql_error
from ztm.resources.accounts import find_account, grants_for
from ztm.resources.grants import parse
from ztm.resources.schema_objects import SchemaObjects

pytestmark = [pytest.mark.control("ZTM-ACC-1"), pytest.mark.needs("roles.admin")]

TABLE_DENIED, DB_DENIED, PRIVILEGE_DENIED = 1142, 1044, 1227
# (what is probed, SQL, the error that proves a privilege refusal, what its message must name);
# {db} is the target's database.
APP_PROBES = [
    ("SELECT on base table users", "SELECT 1 FROM {db}.users LIMIT 0", TABLE_DENIED, "SELECT command denied"),
    ("INSERT on base table users", "INSERT INTO {db}.users (user_id) SELECT 'x' FROM DUAL WHERE 1 = 0",
     TABLE_DENIED, "INSERT command denied"),
    ("UPDATE on base table accounts", "UPDATE {db}.accounts SET balance = balance WHERE 1 = 0", TABLE_DENIED,
     "UPDATE command denied"),
    ("DELETE on base table accounts", "DELETE FROM {db}.accounts WHERE 1 = 0", TABLE_DENIED,
     "DELETE command denied"),
    ("DDL CREATE TABLE", "CREATE TABLE {db}.users (a INT)", TABLE_DENIED, "CREATE command denied"),
    ("DDL ALTER TABLE", "ALTER TABLE {db}.users RENAME COLUMN ztm_absent_column TO ztm_other", TABLE_DENIED,
     "ALTER command denied"),
    ("DDL DROP TABLE", "DROP TABLE {db}.ztm_absent_table", TABLE_DENIED, "DROP command denied"),
    ("CREATE ROUTINE", "CREATE PROCEDURE {db}.app_transfer() BEGIN END", DB_DENIED, "to database '{db}'"),
    ("FILE (SELECT ... INTO OUTFILE)", "SELECT 1 INTO OUTFILE '/nonexistent-ztm-dir/probe'", PRIVILEGE_DENIED, "FILE"),
    ("SUPER-class (SET GLOBAL)", "SET GLOBAL max_connections = @@global.max_connections", PRIVILEGE_DENIED, "SUPER"),
]
DYNAMIC_SQL = re.compile(r"\b(PREPARE|DEALLOCATE\s+PREPARE|EXECUTE\s+(?!ON\b)\w+)\b", re.IGNORECASE)


@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_login_role_holds_only_its_allowed_grants(role, target, policy, admin, account_of, evidence):
    allowed = policy.allowed_grants()
    if role not in allowed:
        pytest.skip(f"policy {policy.name} sets no allowed grants for role {role} (grants.allowed.{role})")
    account = account_of(role)
    lines = grants_for(admin, account.user, account.host)
    evidence.json("grants", {"account": account.name, "grants": lines, "allowed": sorted(map(list, allowed[role]))})
    extra = sorted({g.line.split(" TO ")[0] for g in parse(lines)
                    if g.privilege != "USAGE" and not (g.database == target.database
                                                       and (g.privilege, g.kind, g.object) in allowed[role])})
    assert not extra, f"{account.name} ({role}) holds grants beyond its role: " + "; ".join(extra)


@pytest.mark.needs("login.app", "data_plane")
@pytest.mark.parametrize(("what", "template", "errno", "named"), APP_PROBES, ids=[p[0] for p in APP_PROBES])
def test_app_account_is_refused_for_lack_of_privilege(what, template, errno, named, target, session, evidence):
    sql, named = template.format(db=target.database), named.format(db=target.database)
    conn = session("app")
    baseline = sql_error(conn, f"SELECT {target.database}.get_tenant()")
    assert baseline is None, f"app_user cannot even use its API ({baseline}); denials would prove nothing"
    refusal = sql_error(conn, sql)
    evidence.json("probe", {"probe": what, "sql": sql, "refusal": refusal})
    assert refusal is not None, f"app_user was ALLOWED {what}: {sql}"
    assert refusal[0] == errno and named in refusal[1], (
        f"{what} failed with error {refusal[0]} ({refusal[1]}), not with the privilege refusal {errno} naming "
        f"{named!r}: the account may hold the privilege")


@pytest.mark.needs("data_plane")  # the data plane's API is what is inspected
def test_routines_and_views_run_as_a_locked_definer(target, admin, accounts, evidence):
    objects = SchemaObjects(admin, target.database)
    routines, views = objects.routines, objects.views
    evidence.json("definers", {"routines": [(r.kind, r.name, r.security, r.definer) for r in routines],
                               "views": [(v.name, v.security, v.definer) for v in views]})
    assert routines, f"no routines in {target.database}: the procedure API is not installed"
    problems = [f"{r.kind.lower()} {r.name} is SQL SECURITY {r.security}" for r in routines if r.security != "DEFINER"]
    problems += [f"{r.kind.lower()} {r.name} is owned by {r.definer}" for r in routines if r.definer != DEFINER]
    problems += [f"view {v.name} is SQL SECURITY {v.security}" for v in views if v.security != "DEFINER"]
    problems += [f"view {v.name} is owned by {v.definer}" for v in views if v.definer != DEFINER]
    owner = find_account(accounts, DEFINER_USER, DEFINER_HOST)
    if owner is None:
        problems.append(f"the definer account {DEFINER} does not exist")
    elif not owner.locked:
        problems.append(f"the definer account {DEFINER} is not locked: anyone with its password holds its rights")
    assert not problems, "routines and views must run as the locked definer: " + "; ".join(problems)


@pytest.mark.needs("data_plane")
def test_no_dynamic_sql_in_routine_bodies(target, admin, evidence):
    bodies = {r.name: r.body for r in SchemaObjects(admin, target.database).routines}
    found = {name: DYNAMIC_SQL.search(body).group(0) for name, body in bodies.items() if DYNAMIC_SQL.search(body)}
    evidence.json("dynamic-sql-scan", {"routines": sorted(bodies), "found": found})
    assert bodies, "no routine bodies visible to the admin path"
    assert not found, "routines build SQL at run time (injection risk): " + ", ".join(
        f"{name} ({what})" for name, what in sorted(found.items()))
