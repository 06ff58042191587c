"""ZTM-AUD-1: the audit trail is append-only.

Behaviour: every login account is refused UPDATE, DELETE, INSERT and ALTER on the audit
tables *for lack of privilege* (probes that would change nothing if allowed). Grants: no
login account holds a privilege that could truncate, drop, alter, rewrite or re-trigger
them, at any level (global, database, table). Guards: the triggers that refuse UPDATE and
DELETE exist, are owned by the locked definer, and do refuse, even a privileged writer
(probed as the admin inside a transaction that is rolled back).
"""

from __future__ import annotations

import pytest

from ztm.checks.accounts import grants_for
from ztm.checks.grants import WRITE_PRIVILEGES, parse
from ztm.data_plane import AUDIT_GUARDS, AUDIT_TABLES, DATABASE, DEFINER_HOST, DEFINER_USER
from ztm.fixtures_data import sql_error

pytestmark = pytest.mark.control("ZTM-AUD-1")

LOGIN_ROLES = ("app", "auditor", "migration")
PROBES = {
    "UPDATE": "UPDATE securedb.{t} SET seq = seq WHERE 1 = 0",
    "DELETE": "DELETE FROM securedb.{t} WHERE 1 = 0",
    "INSERT": "INSERT INTO securedb.{t} SELECT * FROM securedb.{t} WHERE 1 = 0",
    "ALTER": "ALTER TABLE securedb.{t} RENAME COLUMN ztm_absent_column TO ztm_other",
}
TABLE_DENIED = 1142


@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_login_accounts_are_refused_writes_on_audit_tables(role, session, evidence):
    conn = session(role)
    refusals = {}
    for table in AUDIT_TABLES:
        for op, template in PROBES.items():
            refusals[f"{op} {table}"] = sql_error(conn, template.format(t=table))
    evidence.json("probes", {"role": role, "refusals": refusals})
    allowed = [what for what, refusal in refusals.items() if refusal is None]
    assert not allowed, f"{role} was ALLOWED on the audit trail: {', '.join(allowed)}"
    other = {what: r for what, r in refusals.items() if r[0] != TABLE_DENIED}
    assert not other, f"{role}: refused for another reason than missing privilege (may hold it): {other}"


@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_no_login_account_holds_destructive_privileges_on_audit_tables(role, admin, account_of, evidence):
    account = account_of(role)
    lines = grants_for(admin, account.user, account.host)
    evidence.json("grants", {"account": account.name, "grants": lines})
    risky = sorted({f"{g.privilege} via {g.line.split(' TO ')[0]}" for g in parse(lines)
                    if g.privilege in WRITE_PRIVILEGES | {"SUPER"} and g.kind == "TABLE"
                    and any(g.covers(DATABASE, t) for t in AUDIT_TABLES)})
    assert not risky, (f"{account.name} ({role}) could truncate, drop, alter, rewrite or re-trigger the audit "
                       "tables: " + "; ".join(risky))


def test_guard_triggers_exist_with_the_expected_definer(admin, accounts, evidence):
    with admin.cursor() as cur:
        cur.execute("SELECT EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, TRIGGER_NAME, DEFINER, "
                    "ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                    "AND EVENT_OBJECT_TABLE IN %s", (DATABASE, AUDIT_TABLES))
        rows = cur.fetchall()
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
