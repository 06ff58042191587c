"""ZTM-TEN-1: tenant isolation bound to the authenticated identity.

Two assessment tenants (A, B) are granted to the app account, a third to no one, a fourth
to the auditor only. Each test is a differential probe: what is refused or invisible under
one tenant is shown to exist and work under its own tenant, so "invisible" cannot mean
"missing"; the tenant the app is refused is accepted for the auditor, so the refusal
follows the identity, not the tenant. Every write procedure is probed across tenants.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from envelope.probe import assessment_record
from ztm.data_plane import API_PROCEDURES
from ztm.db import query, reset_connection
from ztm.fixtures_data import sql_error
from ztm.resources.accounts import list_accounts
from ztm.resources.tenancy import balances, current_tenant, granted_user_names, key_state, visible

pytestmark = [pytest.mark.control("ZTM-TEN-1"), pytest.mark.needs("login.app", "tenants", "data_plane")]

FORGED_VARIABLES = ("tenant", "tenant_id", "current_tenant", "ztm_tenant", "app_tenant")


@pytest.fixture(scope="module")
def probe_data(target, tenants, data_plane):
    """In tenants A and B: one user with two accounts each, written through the API."""
    from ztm.db import connect

    data = {}
    conn = connect(target, target.role("app"), database=target.database)
    try:
        with conn.cursor() as cur:
            for name in ("A", "B"):
                cur.execute("CALL security_set_tenant(%s)", (tenants[name],))
                user_id = str(uuid.uuid4())
                cur.execute("CALL app_create_user_encrypted(%s)", (assessment_record(target, tenants[name], user_id),))
                cur.fetchall()
                account_ids = []
                for _ in range(2):
                    cur.execute("CALL app_open_account(%s, 'EUR', 10)", (user_id,))
                    account_ids.append(cur.fetchall()[0][0])
                data[name] = {"tenant": tenants[name], "user": user_id, "accounts": account_ids}
    finally:
        conn.close()
    return data


def test_cross_tenant_reads_are_invisible(session, probe_data, evidence):
    seen = {}
    for own, other in (("A", "B"), ("B", "A")):
        conn = session("app", tenant=probe_data[own]["tenant"])
        users, accounts = visible(conn, "v_users", "user_id"), visible(conn, "v_accounts", "account_id")
        seen[own] = {"users": sorted(users), "accounts": sorted(accounts)}
        assert probe_data[own]["user"] in users, f"tenant {own}'s own user is not visible under tenant {own}"
        assert probe_data[other]["user"] not in users, (
            f"tenant {other}'s user is visible to a session of tenant {own}: cross-tenant read")
        assert not set(probe_data[other]["accounts"]) & accounts, (
            f"tenant {other}'s accounts are visible to a session of tenant {own}: cross-tenant read")
    evidence.json("visible-rows", {"probe_data": probe_data, "seen": seen})


def _write_probes(target, own: dict, other: dict, conn) -> dict[str, tuple[str, tuple, tuple]]:
    """procedure -> (SQL, arguments inside the own tenant, the same call aimed at the other tenant).
    The rewrap probe re-submits the record's own key at its current version: refused *after*
    the record was found in the own tenant (the version must increase), so nothing changes."""
    wrapped, key_id, version = key_state(conn, own["user"])
    return {
        "app_transfer": ("CALL app_transfer(%s, %s, 1)", (own["accounts"][0], own["accounts"][1]),
                         (own["accounts"][0], other["accounts"][0])),
        "app_open_account": ("CALL app_open_account(%s, 'EUR', 0)", (own["user"],), (other["user"],)),
        "app_create_user_encrypted": ("CALL app_create_user_encrypted(%s)",
                                      (assessment_record(target, own["tenant"], str(uuid.uuid4())),),
                                      (assessment_record(target, other["tenant"], str(uuid.uuid4())),)),
        "app_rewrap_user_key": ("CALL app_rewrap_user_key(%s, %s, %s, %s)",
                                (own["user"], base64.b64encode(wrapped).decode(), key_id, version),
                                (other["user"], base64.b64encode(wrapped).decode(), key_id, version)),
    }


REFUSAL = {"app_transfer": "not found in the current tenant", "app_open_account": "no such user in the current tenant",
           "app_create_user_encrypted": "record belongs to another tenant",
           "app_rewrap_user_key": "no such user in the current tenant"}
# What the call inside the own tenant answers: None (it succeeds) or the refusal that shows
# it got past the tenant check.
BASELINE = {"app_rewrap_user_key": "the key version must increase"}


def test_cross_tenant_writes_are_refused_by_every_write_procedure(target, session, probe_data, evidence):
    writers = set(API_PROCEDURES) - {"security_set_tenant"}
    assert writers == set(REFUSAL), f"write procedures without a cross-tenant probe: {sorted(writers - set(REFUSAL))}"
    own, other = probe_data["A"], probe_data["B"]
    conn = session("app", tenant=own["tenant"])
    watcher = session("app", tenant=other["tenant"])
    other_before = (balances(watcher), key_state(watcher, other["user"]))
    results, problems = {}, []
    for procedure, (sql, inside, across) in _write_probes(target, own, other, conn).items():
        baseline, refused = sql_error(conn, sql, inside), sql_error(conn, sql, across)
        results[procedure] = {"own_tenant": baseline, "other_tenant": refused}
        expected = BASELINE.get(procedure)
        if (baseline is None) != (expected is None) or (baseline and expected not in baseline[1]):
            problems.append(f"{procedure} inside its own tenant answered {baseline}, not "
                            f"{expected or 'success'}: the probe proves nothing")
        elif refused is None:
            problems.append(f"{procedure} wrote into tenant B from a session of tenant A: cross-tenant write")
        elif REFUSAL[procedure] not in refused[1]:
            problems.append(f"{procedure} refused the cross-tenant call for another reason: {refused[1]}")
    other_after = (balances(watcher), key_state(watcher, other["user"]))
    evidence.json("cross-tenant-writes", {"results": results, "tenant_B_unchanged": other_before == other_after})
    if other_before != other_after:
        problems.append("tenant B's rows changed during the cross-tenant probes")
    assert not problems, "; ".join(problems)


@pytest.mark.needs("login.auditor")
def test_tenant_grant_follows_the_identity(session, tenants, evidence):
    """Differential: the tenant the app is refused is accepted for the auditor, who holds its grant."""
    if not tenants["auditor_only"]:
        pytest.skip("the target names no tenant granted to the auditor only ([tenants].auditor_only), so a "
                    "refusal of the app cannot be told apart from a tenant nobody may use")
    auditor, app = session("auditor"), session("app")
    accepted = sql_error(auditor, "CALL security_set_tenant(%s)", (tenants["auditor_only"],))
    refused = sql_error(app, "CALL security_set_tenant(%s)", (tenants["auditor_only"],))
    auditor_context, app_context = current_tenant(auditor), current_tenant(app)
    evidence.json("identity-binding", {"tenant": tenants["auditor_only"], "auditor": accepted, "app": refused,
                                       "auditor_context": auditor_context, "app_context": app_context})
    assert accepted is None and auditor_context == tenants["auditor_only"], (
        f"the auditor cannot select the tenant granted to it ({accepted}): the probe proves nothing")
    assert refused is not None, "the auditor's tenant was accepted for app_user: the grant check ignores the identity"
    assert "not granted" in refused[1], f"the app was refused the auditor's tenant for another reason: {refused}"
    assert app_context is None, f"app_user acts for the auditor's tenant {app_context}"


def test_tenant_grants_name_one_account_each(target, admin, evidence):
    """Grants are keyed by the client's user name (USER(): the only identity visible inside a
    definer routine). That is the authenticated account only if no anonymous account can
    take any name, and each granted name belongs to one account."""
    accounts = list_accounts(admin, target.dialect)
    names = granted_user_names(admin, target.database)
    anonymous = [a.name for a in accounts if a.user == "" and not a.locked]
    shared = {n: [a.name for a in accounts if a.user == n] for n in names}
    shared = {n: hosts for n, hosts in shared.items() if len(hosts) > 1}
    evidence.json("grant-identities", {"granted_names": names, "anonymous": anonymous, "shared": shared})
    problems = [f"anonymous account {name}: a client could log in as it under any user name and claim that "
                "name's tenants" for name in anonymous]
    problems += [f"user name {n} with tenant grants belongs to several accounts: {', '.join(h)}"
                 for n, h in shared.items()]
    assert not problems, "; ".join(problems)


def test_forged_user_variables_change_nothing(session, probe_data, evidence):
    conn = session("app", tenant=probe_data["A"]["tenant"])
    with conn.cursor() as cur:
        for name in FORGED_VARIABLES:
            cur.execute(f"SET @{name} = %s", (probe_data["B"]["tenant"],))
    current = current_tenant(conn)
    users = visible(conn, "v_users", "user_id")
    evidence.json("forged", {"variables": FORGED_VARIABLES, "get_tenant": current, "visible_users": sorted(users)})
    assert current == probe_data["A"]["tenant"], f"user variables moved the tenant context to {current}"
    assert probe_data["B"]["user"] not in users, "setting a user variable exposed tenant B's rows"


def test_ungranted_tenant_is_refused(session, tenants, evidence):
    conn = session("app")
    granted = sql_error(conn, "CALL security_set_tenant(%s)", (tenants["A"],))
    refused = sql_error(conn, "CALL security_set_tenant(%s)", (tenants["ungranted"],))
    after = current_tenant(conn)
    evidence.json("set-tenant", {"granted": granted, "ungranted": refused, "context_after_refusal": after})
    assert granted is None, f"the app account cannot select its own granted tenant A: {granted}"
    assert refused is not None, "security_set_tenant accepted a tenant never granted to the app account"
    assert "not granted" in refused[1], f"the ungranted tenant was refused for another reason: {refused}"
    assert after is None, f"after a refused switch the connection still acts for tenant {after}"


def test_without_a_tenant_views_are_empty_and_procedures_refuse(target, session, probe_data, evidence):
    writer = session("app", tenant=probe_data["A"]["tenant"])  # another live session with a tenant
    conn = session("app")
    context = current_tenant(conn)
    counts = {view: len(visible(conn, view, col)) for view, col in (("v_users", "user_id"),
                                                                      ("v_accounts", "account_id"))}
    probes = _write_probes(target, probe_data["A"], probe_data["B"], writer)
    refused = {procedure: sql_error(conn, sql, inside) for procedure, (sql, inside, _) in probes.items()}
    evidence.json("no-tenant", {"get_tenant": context, "rows": counts, "writes": refused})
    assert writer.open
    assert context is None, f"a new connection inherited tenant {context}: the context leaks between connections"
    assert counts == {"v_users": 0, "v_accounts": 0}, f"views show rows without a tenant: {counts}"
    accepted = [p for p, r in refused.items() if r is None or "no tenant context" not in r[1]]
    assert not accepted, "write procedures that did not refuse for want of a tenant: " + "; ".join(
        f"{p} ({refused[p]})" for p in accepted)


def test_a_reset_connection_has_no_tenant(session, probe_data, evidence):
    """What a connection pool does between requests (COM_RESET_CONNECTION) must end the tenant
    context: the next request on the same connection acts for no tenant until it sets one.
    Differential: the same connection, before the reset, acts for tenant A and sees its rows."""
    conn = session("app", tenant=probe_data["A"]["tenant"])
    before = current_tenant(conn), probe_data["A"]["user"] in visible(conn, "v_users", "user_id")
    connection_id = query(conn, "SELECT CONNECTION_ID()")[0][0]
    reset_connection(conn)
    same_connection = query(conn, "SELECT CONNECTION_ID()")[0][0] == connection_id
    after = current_tenant(conn), len(visible(conn, "v_users", "user_id"))
    evidence.json("reset-connection", {"before": {"get_tenant": before[0], "sees_own_rows": before[1]},
                                       "same_connection": same_connection,
                                       "after": {"get_tenant": after[0], "visible_users": after[1]}})
    assert before == (probe_data["A"]["tenant"], True), f"the probe could not act for tenant A first: {before}"
    assert same_connection, "the reset opened another connection: the probe proves nothing"
    assert after == (None, 0), (f"after COM_RESET_CONNECTION the connection still acts for tenant {after[0]} and "
                                f"sees {after[1]} users: a pooled connection inherits the previous request's tenant")
