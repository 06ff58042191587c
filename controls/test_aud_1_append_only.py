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

import pytest

from ztm.checks.accounts import list_accounts
from ztm.checks.grants import WRITE_PRIVILEGES, effective_grants, shared_grantees
from ztm.data_plane import (
    AUDIT_APPEND,
    AUDIT_GUARDS,
    AUDIT_TABLES,
    AUDITED_EVENTS,
    DATA_TABLES,
    DATABASE,
    DEFINER_AUDIT_GRANTS,
    DEFINER_HOST,
    DEFINER_USER,
    SESSION_TABLES,
)
from ztm.fixtures_data import ER_LOCK_WAIT_TIMEOUT, PROBE_LOCK_WAIT_S, sql_error

pytestmark = pytest.mark.control("ZTM-AUD-1")

TABLE_DENIED = 1142
PROBE_TRIGGER = "ztm_probe_trigger"
# op -> (statement, the privilege a refusal must name, needs the fence)
PROBES = {
    "UPDATE": ("UPDATE securedb.{t} SET seq = seq WHERE 1 = 0", "UPDATE", False),
    "DELETE": ("DELETE FROM securedb.{t} WHERE 1 = 0", "DELETE", False),
    "INSERT": ("INSERT INTO securedb.{t} (seq) SELECT 0 FROM DUAL WHERE 1 = 0", "INSERT", False),
    "ALTER": ("ALTER TABLE securedb.{t} RENAME COLUMN ztm_absent_column TO ztm_other", "ALTER", True),
    "TRUNCATE": ("TRUNCATE TABLE securedb.{t}", "DROP", True),
    "DROP": ("DROP TABLE securedb.{t}", "DROP", True),
    "CREATE TRIGGER": (f"CREATE TRIGGER securedb.{PROBE_TRIGGER} BEFORE INSERT ON securedb.{{t}} FOR EACH ROW "
                       "SET @ztm_probe = 1", "TRIGGER", True),
}
# Tables whose rows are the grants: writing them is granting oneself anything.
GRANT_TABLES = ("user", "global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "roles_mapping",
                "role_edges", "default_roles", "proxies_priv")
ESCALATION = {"SUPER", "CREATE USER"}


def _login_roles(target) -> list[str]:
    return sorted(role for role in target.roles if role != "admin")


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


@pytest.mark.parametrize("role", ["app", "auditor", "migration", "probe"])
def test_login_accounts_are_refused_changes_to_audit_tables(role, target, connect, fenced, admin, evidence):
    if role not in target.roles:
        pytest.skip(f"the target has no {role} role to log in as")
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
                    results[f"{op} {table}"] = sql_error(conn, template.format(t=table))
        with fenced(tuple(f"{DATABASE}.{t}" for t in AUDIT_TABLES)) as fence_proof:
            for table in AUDIT_TABLES:
                for op, (template, _, fence) in PROBES.items():
                    if fence:
                        results[f"{op} {table}"] = sql_error(conn, template.format(t=table))
    finally:  # only reachable if the fence failed and a trigger was created after all
        sql_error(admin, f"DROP TRIGGER IF EXISTS securedb.{PROBE_TRIGGER}")
    evidence.json("probes", {"role": role, "account": account, "results": results, "fence": fence_proof})
    problems = {}
    for table in AUDIT_TABLES:
        for op, (_, privilege, _) in PROBES.items():
            why = _judge(results[f"{op} {table}"], privilege)
            if why:
                problems[f"{op} {table}"] = why
    assert not problems, f"{role} ({account}) on the audit trail: " + "; ".join(
        f"{what}: {why}" for what, why in problems.items())


def test_no_account_but_the_admin_can_change_the_audit_tables(target, admin, evidence):
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
            if is_definer and grant.kind == "TABLE" and grant.database == DATABASE \
                    and (grant.privilege, grant.object) in DEFINER_AUDIT_GRANTS:
                continue  # the locked owner appends through its own guarded routines
            if grant.kind == "TABLE" and grant.privilege in WRITE_PRIVILEGES | ESCALATION and any(
                    grant.covers(DATABASE, t) for t in AUDIT_TABLES):
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


def _triggers(admin) -> list[tuple]:
    with admin.cursor() as cur:
        cur.execute("SELECT EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, TRIGGER_NAME, DEFINER, "
                    "ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (DATABASE,))
        return list(cur.fetchall())


def test_guard_triggers_exist_with_the_expected_definer(admin, accounts, evidence):
    rows = [r for r in _triggers(admin) if r[0] in AUDIT_TABLES]
    evidence.json("guard-triggers", [r[:5] for r in rows])
    found = {(t, timing, event): (name, definer, body) for t, timing, event, name, definer, body in rows}
    definer = f"{DEFINER_USER}@{DEFINER_HOST}"
    problems = []
    for guard in AUDIT_GUARDS:
        if guard not in found:
            problems.append(f"no {guard[1]} {guard[2]} trigger on {guard[0]}")
            continue
        name, owner, body = found[guard]
        if owner != definer:
            problems.append(f"{name} is owned by {owner}, not {definer}")
        if "SIGNAL" not in body.upper():
            problems.append(f"{name} never refuses (no SIGNAL)")
    owner = [a for a in accounts if a.user == DEFINER_USER and a.host == DEFINER_HOST]
    if not owner or not owner[0].locked:
        problems.append(f"the trigger owner {definer} is missing or not locked")
    assert not problems, "audit guard triggers: " + "; ".join(problems)


def test_every_data_table_logs_every_change(admin, evidence):
    with admin.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_TYPE = 'BASE TABLE'", (DATABASE,))
        tables = sorted(row[0] for row in cur.fetchall())
    data = [t for t in tables if t not in AUDIT_TABLES and t not in SESSION_TABLES]
    found = {(t, event): (name, definer, body) for t, timing, event, name, definer, body in _triggers(admin)
             if timing == "AFTER"}
    definer = f"{DEFINER_USER}@{DEFINER_HOST}"
    problems = [f"data table {t} is missing" for t in DATA_TABLES if t not in tables]
    for table in data:
        for event in AUDITED_EVENTS:
            trigger = found.get((table, event))
            if trigger is None:
                problems.append(f"no AFTER {event} audit trigger on {table}: its {event}s are not audited")
            elif trigger[1] != definer:
                problems.append(f"{trigger[0]} is owned by {trigger[1]}, not {definer}")
            elif f"{AUDIT_APPEND}(" not in trigger[2]:
                problems.append(f"{trigger[0]} does not append to the audit chain (no {AUDIT_APPEND} call)")
    evidence.json("audit-triggers", {"data_tables": data, "triggers": sorted(f"{t} {e}: {v[0]}" for (t, e), v
                                                                            in found.items())})
    assert not problems, "data changes that escape the audit trail: " + "; ".join(problems)


def test_guards_refuse_even_a_privileged_writer(admin, evidence):
    """As the admin (who holds the privileges), in a transaction that is always rolled back."""
    with admin.cursor() as cur:
        cur.execute("SELECT MAX(seq) FROM securedb.audit_events")
        (head,) = cur.fetchone()
    if head is None:
        pytest.skip("the audit trail has no event yet, so there is no row to probe the guards with")
    results = {}
    try:
        admin.begin()
        results["UPDATE"] = sql_error(admin, "UPDATE securedb.audit_events SET payload = payload WHERE seq = %s",
                                      (head,))
        results["DELETE"] = sql_error(admin, "DELETE FROM securedb.audit_events WHERE seq = %s", (head,))
    finally:
        admin.rollback()
    evidence.json("privileged-writer", {"row": head, "refusals": results})
    unguarded = [op for op, refusal in results.items() if refusal is None or "append-only" not in refusal[1]]
    assert not unguarded, ("no trigger refused " + " and ".join(unguarded) + f" of audit row {head} by a "
                           f"privileged account: {results}")
