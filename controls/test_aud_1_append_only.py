"""ZTM-AUD-1: the audit trail is append-only.

Behaviour: every login account of the target is refused UPDATE, DELETE, INSERT, ALTER,
TRUNCATE, DROP and CREATE TRIGGER on the audit tables *for lack of privilege*: error 1142
naming the privilege the statement needs (TRUNCATE needs DROP), not a missing table or a
trigger's refusal (MySQL with binary logging refuses CREATE TRIGGER to any account without
SUPER first, error 1419; the TRIGGER privilege is then judged by the grants test).
TRUNCATE, DROP, ALTER and CREATE TRIGGER run only behind a metadata-lock fence (an open
transaction of the admin path that has read the table): an account that wrongly holds the
privilege waits and times out instead of destroying anything, and the fence is proven to
block a conflicting lock before any such probe runs.
Grants: no account but the break-glass admin the assessment connects as holds, directly,
through roles, PUBLIC or mandatory roles, a privilege that could change, truncate, drop,
alter or re-trigger the audit tables, or rewrite the grant tables; grants that cannot be
read fail the control. Triggers: the guards exist, are owned by the locked definer and
refuse even a privileged writer; every data table logs INSERT, UPDATE and DELETE.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from envelope.probe import assessment_record
from ztm.audit_chain import lane_of, new_events, read_heads, verify_database
from ztm.data_plane import (
    AUDIT_APPEND,
    AUDIT_GUARDS,
    AUDIT_TABLES,
    AUDITED_EVENTS,
    DATA_TABLES,
    DEFINER,
    DEFINER_HOST,
    DEFINER_USER,
    LOGIN_ROLES,
    SESSION_TABLES,
)
from ztm.fixtures_data import ER_LOCK_WAIT_TIMEOUT, PROBE_LOCK_WAIT_S, sql_error
from ztm.resources.accounts import find_account, list_accounts
from ztm.resources.grants import WRITE_PRIVILEGES, effective_grants, shared_grantees
from ztm.resources.schema_objects import SchemaObjects

pytestmark = [pytest.mark.control("ZTM-AUD-1"), pytest.mark.needs("roles.admin", "data_plane")]

TABLE_DENIED = 1142
PROBE_TRIGGER = "ztm_probe_trigger"
# op -> (statement on {db}.{t}, the privilege a refusal must name, needs the fence)
PROBES = {
    "UPDATE": ("UPDATE {db}.{t} SET seq = seq WHERE 1 = 0", "UPDATE", False),
    "DELETE": ("DELETE FROM {db}.{t} WHERE 1 = 0", "DELETE", False),
    "INSERT": ("INSERT INTO {db}.{t} (seq) SELECT 0 FROM DUAL WHERE 1 = 0", "INSERT", False),
    "ALTER": ("ALTER TABLE {db}.{t} RENAME COLUMN ztm_absent_column TO ztm_other", "ALTER", True),
    "TRUNCATE": ("TRUNCATE TABLE {db}.{t}", "DROP", True),
    "DROP": ("DROP TABLE {db}.{t}", "DROP", True),
    "CREATE TRIGGER": (f"CREATE TRIGGER {{db}}.{PROBE_TRIGGER} BEFORE INSERT ON {{db}}.{{t}} FOR EACH ROW "
                       "SET @ztm_probe = 1", "TRIGGER", True),
}
# Tables whose rows are the grants: writing them is granting oneself anything.
GRANT_TABLES = ("user", "global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "roles_mapping",
                "role_edges", "default_roles", "proxies_priv")
ESCALATION = {"SUPER", "CREATE USER"}


# MySQL with binary logging refuses CREATE TRIGGER to every account without SUPER (1419)
# before it looks at the TRIGGER privilege: a real refusal, but one that says nothing about
# TRIGGER itself, which the grants test below judges.
ER_BINLOG_NEEDS_SUPER = 1419


def _judge(refusal, privilege: str) -> str | None:
    """Why a probe result is not a privilege refusal naming ``privilege`` (None: it is)."""
    if refusal is None:
        return "ALLOWED"
    if privilege == "TRIGGER" and refusal[0] == ER_BINLOG_NEEDS_SUPER:
        return None
    if refusal[0] == ER_LOCK_WAIT_TIMEOUT:
        return "ALLOWED by privileges (it waited for the fence's lock instead of being refused)"
    if refusal[0] != TABLE_DENIED or f"{privilege} command denied" not in refusal[1]:
        return f"refused for another reason than a missing {privilege} privilege: {refusal[0]} {refusal[1]}"
    return None


@pytest.mark.needs("login.{role}")
@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_login_accounts_are_refused_changes_to_audit_tables(role, target, connect, fenced, admin, evidence):
    db = target.database
    conn = connect(role)  # no default database: the probe account may not even have one
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        (account,) = cur.fetchone()
        cur.execute(f"SET SESSION lock_wait_timeout = {PROBE_LOCK_WAIT_S}")
    results: dict[str, object] = {}
    try:
        for table in AUDIT_TABLES:
            for op, (template, _, fence) in PROBES.items():
                if not fence:
                    results[f"{op} {table}"] = sql_error(conn, template.format(db=db, t=table))
        with fenced(tuple(f"{db}.{t}" for t in AUDIT_TABLES)) as held:
            fence_proof = held.proof
            for table in AUDIT_TABLES:
                for op, (template, _, fence) in PROBES.items():
                    if fence:  # a wait for the fence's lock is seen and stopped at once: "ALLOWED"
                        results[f"{op} {table}"] = held.run(conn, template.format(db=db, t=table))
    finally:  # only reachable if the fence failed and a trigger was created after all
        sql_error(admin, f"DROP TRIGGER IF EXISTS {db}.{PROBE_TRIGGER}")
    evidence.json("probes", {"role": role, "account": account, "results": results, "fence": fence_proof})
    problems = {}
    for table in AUDIT_TABLES:
        for op, (_, privilege, _) in PROBES.items():
            why = _judge(results[f"{op} {table}"], privilege)
            if why:
                problems[f"{op} {table}"] = why
    assert not problems, f"{role} ({account}) on the audit trail: " + "; ".join(
        f"{what}: {why}" for what, why in problems.items())


def test_no_account_but_the_admin_can_change_the_audit_tables(target, policy, admin, evidence):
    db, definer_grants = target.database, policy.definer_audit_grants()
    with admin.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        (me,) = cur.fetchone()
    shared, problems = shared_grantees(admin, target.dialect)
    unreadable = {f"{name} (granted to every account)": why for name, why in problems.items()}
    report, risky, skipped = {}, [], []
    for account in list_accounts(admin, target.dialect):
        if f"{account.user}@{account.host}" == me:
            continue  # the break-glass admin: its use is what the off-host anchor makes visible
        is_definer = (account.user, account.host) == (DEFINER_USER, DEFINER_HOST)
        if account.locked and not is_definer:
            skipped.append(account.name)  # cannot log in; a locked role is followed from the accounts holding it
            continue
        found = effective_grants(admin, target.dialect, account.user, account.host, shared)
        report[account.name] = found.to_dict()
        unreadable.update({f"{source} (of {account.name})": why for source, why in found.unreadable.items()})
        for source, grant in found.grants():
            where = f"{grant.privilege} via {grant.line.split(' TO ')[0]}"
            if source != found.account:
                where += f" (held by {source})"
            if is_definer and grant.kind == "TABLE" and grant.database == db \
                    and (grant.privilege, grant.object) in definer_grants:
                continue  # the locked owner appends through its own guarded routines
            if grant.kind == "TABLE" and grant.privilege in WRITE_PRIVILEGES | ESCALATION and any(
                    grant.covers(db, t) for t in AUDIT_TABLES):
                risky.append(f"{account.name}: {where}")
            elif grant.kind == "TABLE" and grant.privilege in WRITE_PRIVILEGES and any(
                    grant.covers("mysql", t) for t in GRANT_TABLES):
                risky.append(f"{account.name}: {where} (the grant tables: it can grant itself anything)")
            elif grant.is_global and grant.privilege in ESCALATION:
                risky.append(f"{account.name}: {where}")
    evidence.json("grants", {"admin_path": me, "accounts": report, "locked_skipped": skipped,
                             "shared": [g.label for g in shared], "unreadable": unreadable})
    assert not unreadable, "grants that could not be read (so could not be judged): " + "; ".join(
        f"{who}: {why}" for who, why in unreadable.items())
    assert not risky, ("accounts that could truncate, drop, alter, rewrite or re-trigger the audit tables: "
                       + "; ".join(sorted(set(risky))))


def _locked_definer_problems(accounts) -> list[str]:
    owner = find_account(accounts, DEFINER_USER, DEFINER_HOST)
    return [] if owner is not None and owner.locked else [f"the trigger owner {DEFINER} is missing or not locked"]


def test_guard_triggers_exist_with_the_expected_definer(target, admin, accounts, evidence):
    triggers = [t for t in SchemaObjects(admin, target.database).triggers if t.table in AUDIT_TABLES]
    evidence.json("guard-triggers", [(t.table, t.timing, t.event, t.name, t.definer) for t in triggers])
    found = {(t.table, t.timing, t.event): t for t in triggers}
    problems = []
    for guard in AUDIT_GUARDS:
        trigger = found.get(guard)
        if trigger is None:
            problems.append(f"no {guard[1]} {guard[2]} trigger on {guard[0]}")
            continue
        if trigger.definer != DEFINER:
            problems.append(f"{trigger.name} is owned by {trigger.definer}, not {DEFINER}")
        if "SIGNAL" not in trigger.body.upper():
            problems.append(f"{trigger.name} never refuses (no SIGNAL)")
    problems += _locked_definer_problems(accounts)
    assert not problems, "audit guard triggers: " + "; ".join(problems)


def test_every_data_table_logs_every_change(target, admin, evidence):
    objects = SchemaObjects(admin, target.database)
    tables = objects.base_tables
    data = [t for t in tables if t not in AUDIT_TABLES and t not in SESSION_TABLES]
    found = {(t.table, t.event): t for t in objects.triggers if t.timing == "AFTER"}
    problems = [f"data table {t} is missing" for t in DATA_TABLES if t not in tables]
    for table in data:
        for event in AUDITED_EVENTS:
            trigger = found.get((table, event))
            if trigger is None:
                problems.append(f"no AFTER {event} audit trigger on {table}: its {event}s are not audited")
            elif trigger.definer != DEFINER:
                problems.append(f"{trigger.name} is owned by {trigger.definer}, not {DEFINER}")
            elif f"{AUDIT_APPEND}(" not in trigger.body:
                problems.append(f"{trigger.name} does not append to the audit chain (no {AUDIT_APPEND} call)")
    evidence.json("audit-triggers", {"data_tables": data, "triggers": sorted(f"{t} {e}: {v.name}" for (t, e), v
                                                                            in found.items())})
    assert not problems, "data changes that escape the audit trail: " + "; ".join(problems)


def test_guards_refuse_even_a_privileged_writer(target, admin, evidence):
    """As the admin (who holds the privileges), in a transaction that is always rolled back."""
    db = target.database
    with admin.cursor() as cur:
        cur.execute(f"SELECT lane, seq FROM {db}.audit_chain_head WHERE seq > 0 ORDER BY seq DESC LIMIT 1")
        head = cur.fetchone()
    if head is None:
        pytest.skip("the audit trail has no event yet, so there is no row to probe the guards with")
    results = {}
    try:
        admin.begin()
        results["UPDATE"] = sql_error(admin, f"UPDATE {db}.audit_events SET payload = payload WHERE lane = %s "
                                      "AND seq = %s", head)
        results["DELETE"] = sql_error(admin, f"DELETE FROM {db}.audit_events WHERE lane = %s AND seq = %s", head)
    finally:
        admin.rollback()
    evidence.json("privileged-writer", {"row": {"lane": head[0], "seq": head[1]}, "refusals": results})
    unguarded = [op for op, refusal in results.items() if refusal is None or "append-only" not in refusal[1]]
    assert not unguarded, ("no trigger refused " + " and ".join(unguarded) + f" of audit row lane {head[0]} seq "
                           f"{head[1]} by a privileged account: {results}")


@pytest.mark.needs("login.app", "login.auditor")
def test_every_write_procedure_appends_exactly_its_events(target, connect, tenants, evidence):
    """Coverage by behaviour, not by reading trigger text: as the app, in assessment tenant A,
    each write procedure is called with probe data and the trail must gain exactly the events
    it implies (table, op, key, before and after images, tenant, actor), chained from the head
    of tenant A's lane (where they must all go)
    before the calls; refused calls add none. app_rewrap_user_key is probed with a version that
    must be refused (a real rewrap needs a newer KEK than the target's key holds)."""
    app, auditor = connect("app", database=target.database), connect("auditor")
    heads_before = read_heads(auditor, target.database)
    lane = lane_of(tenants["A"])
    assert lane in heads_before, f"the head row of tenant A's lane {lane} is missing: nothing can be appended to it"
    user_id = str(uuid.uuid4())
    with app.cursor() as cur:
        cur.execute("CALL security_set_tenant(%s)", (tenants["A"],))
        cur.execute("CALL app_create_user_encrypted(%s)", (assessment_record(target, tenants["A"], user_id),))
        cur.fetchall()
        opened = []
        for _ in range(2):
            cur.execute("CALL app_open_account(%s, 'EUR', 10)", (user_id,))
            opened.append(cur.fetchall()[0][0])
        cur.execute("CALL app_transfer(%s, %s, 1)", tuple(opened))
        cur.execute("SELECT pii_key_version FROM v_users WHERE user_id = %s", (user_id,))
        (version,) = cur.fetchone()
    refused = {"app_transfer overdraft": sql_error(app, "CALL app_transfer(%s, %s, 1000)", tuple(opened)),
               "app_rewrap_user_key same version": sql_error(
                   app, "CALL app_rewrap_user_key(%s, 'AAAA', 'probe', %s)", (user_id, version))}
    report = verify_database(auditor, start=heads_before, database=target.database)
    keys = {user_id, *opened}
    events = [e for e in new_events(auditor, target.database, heads_before) if e.get("key") in keys]
    seen = [(e["table"], e["op"], e["key"], _balance(e.get("before")), _balance(e.get("after"))) for e in events]
    expected = [("users", "INSERT", user_id, None, None),
                ("accounts", "INSERT", opened[0], None, 10), ("accounts", "INSERT", opened[1], None, 10),
                ("accounts", "UPDATE", opened[0], 10, 9), ("accounts", "UPDATE", opened[1], 10, 11)]
    evidence.json("behaviour", {"lane": lane, "head_before": heads_before[lane], "events": seen, "expected": expected,
                                "refused": refused, "chain": report.to_dict()})
    assert all(r is not None for r in refused.values()), f"a call that must be refused was accepted: {refused}"
    assert report.intact, f"the events the probes appended do not chain from the head: {report.describe()}"
    assert seen == expected, (f"the write procedures did not append exactly their events: expected {expected}, "
                              f"the trail holds {seen}")
    astray = [(e["lane"], e["seq"]) for e in events if e.get("lane") != lane]
    assert not astray, f"events {astray} of tenant A are not in its lane {lane}"
    wrong = [e["seq"] for e in events if e.get("tenant") != tenants["A"] or not str(e.get("actor", "")).startswith(
        target.roles["app"].user + "@")]
    assert not wrong, f"events {wrong} do not name tenant A and the app account as tenant and actor"


def _balance(image: dict | None) -> Decimal | None:
    """The balance an accounts image records, or None for images without one."""
    return Decimal(str(image["balance"])) if image and "balance" in image else None
