"""ZTM-TEN-1: tenant isolation bound to the authenticated identity.

Two assessment tenants (A, B) are granted to the app account, a third to no one. Each test
is a differential probe: what is refused or invisible under one tenant is shown to exist
and work under its own tenant, so "invisible" cannot mean "missing".
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from ztm.fixtures_data import sql_error

pytestmark = pytest.mark.control("ZTM-TEN-1")

FORGED_VARIABLES = ("tenant", "tenant_id", "current_tenant", "ztm_tenant", "app_tenant")


def _record(target, tenant: str, user_id: str) -> str:
    """A record as the application writes it: through the envelope client when the target has
    a KMS; otherwise random bytes stand in for ciphertext (tenant isolation does not read them)."""
    if target.section("kms"):
        from envelope.client import api_json
        from envelope.setup import client_for

        client = client_for(target)
        try:
            return api_json(client.encrypt_user(tenant, {"name": "tenant probe", "email": "probe@example.invalid",
                                                         "phone": "+15550000001"}, "ztm-assessment", user_id))
        finally:
            client.kms.close()

    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).decode()

    doc = {"user_id": user_id, "role": "ztm-assessment", "pii_wrapped_key": b64(48),
           "pii_kms_key_id": "assessment-probe"}
    for field in ("name", "email", "phone"):
        doc[field] = {"ct": b64(32), "iv": b64(12), "aad": b64(24)}
    return json.dumps(doc)


@pytest.fixture(scope="module")
def probe_data(target, tenants):
    """In tenants A and B: one user with two accounts each, written through the API."""
    from ztm.db import connect

    data = {}
    conn = connect(target, target.roles["app"], database="securedb")
    try:
        with conn.cursor() as cur:
            for name in ("A", "B"):
                cur.execute("CALL security_set_tenant(%s)", (tenants[name],))
                user_id = str(uuid.uuid4())
                cur.execute("CALL app_create_user_encrypted(%s)", (_record(target, tenants[name], user_id),))
                cur.fetchall()
                account_ids = []
                for _ in range(2):
                    cur.execute("CALL app_open_account(%s, 'EUR', 10)", (user_id,))
                    account_ids.append(cur.fetchall()[0][0])
                data[name] = {"tenant": tenants[name], "user": user_id, "accounts": account_ids}
    finally:
        conn.close()
    return data


def _visible(conn, view: str, column: str) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {column} FROM {view}")  # view and column come from this module, not input
        return {row[0] for row in cur.fetchall()}


def test_cross_tenant_reads_are_invisible(session, probe_data, evidence):
    seen = {}
    for own, other in (("A", "B"), ("B", "A")):
        conn = session("app", tenant=probe_data[own]["tenant"])
        users, accounts = _visible(conn, "v_users", "user_id"), _visible(conn, "v_accounts", "account_id")
        seen[own] = {"users": sorted(users), "accounts": sorted(accounts)}
        assert probe_data[own]["user"] in users, f"tenant {own}'s own user is not visible under tenant {own}"
        assert probe_data[other]["user"] not in users, (
            f"tenant {other}'s user is visible to a session of tenant {own}: cross-tenant read")
        assert not set(probe_data[other]["accounts"]) & accounts, (
            f"tenant {other}'s accounts are visible to a session of tenant {own}: cross-tenant read")
    evidence.json("visible-rows", {"probe_data": probe_data, "seen": seen})


def test_cross_tenant_write_is_refused(session, probe_data, evidence):
    a1, a2 = probe_data["A"]["accounts"]
    b1 = probe_data["B"]["accounts"][0]
    conn = session("app", tenant=probe_data["A"]["tenant"])
    inside = sql_error(conn, "CALL app_transfer(%s, %s, 1)", (a1, a2))
    back = sql_error(conn, "CALL app_transfer(%s, %s, 1)", (a2, a1))
    across = sql_error(conn, "CALL app_transfer(%s, %s, 1)", (a1, b1))
    evidence.json("transfers", {"within_A": inside, "back": back, "A_to_B": across})
    assert inside is None and back is None, f"a transfer inside tenant A failed ({inside or back}): baseline broken"
    assert across is not None, "a transfer from tenant A into tenant B's account was accepted: cross-tenant write"
    assert "not found in the current tenant" in across[1], f"cross-tenant transfer refused for another reason: {across}"


def test_forged_user_variables_change_nothing(session, probe_data, evidence):
    conn = session("app", tenant=probe_data["A"]["tenant"])
    with conn.cursor() as cur:
        for name in FORGED_VARIABLES:
            cur.execute(f"SET @{name} = %s", (probe_data["B"]["tenant"],))
        cur.execute("SELECT get_tenant()")
        (current,) = cur.fetchone()
    users = _visible(conn, "v_users", "user_id")
    evidence.json("forged", {"variables": FORGED_VARIABLES, "get_tenant": current, "visible_users": sorted(users)})
    assert current == probe_data["A"]["tenant"], f"user variables moved the tenant context to {current}"
    assert probe_data["B"]["user"] not in users, "setting a user variable exposed tenant B's rows"


def test_ungranted_tenant_is_refused(session, tenants, evidence):
    conn = session("app")
    granted = sql_error(conn, "CALL security_set_tenant(%s)", (tenants["A"],))
    refused = sql_error(conn, "CALL security_set_tenant(%s)", (tenants["ungranted"],))
    with conn.cursor() as cur:
        cur.execute("SELECT get_tenant()")
        (after,) = cur.fetchone()
    evidence.json("set-tenant", {"granted": granted, "ungranted": refused, "context_after_refusal": after})
    assert granted is None, f"the app account cannot select its own granted tenant A: {granted}"
    assert refused is not None, "security_set_tenant accepted a tenant never granted to the app account"
    assert "not granted" in refused[1], f"the ungranted tenant was refused for another reason: {refused}"
    assert after is None, f"after a refused switch the connection still acts for tenant {after}"


def test_without_a_tenant_views_are_empty_and_procedures_refuse(session, probe_data, evidence):
    writer = session("app", tenant=probe_data["A"]["tenant"])  # another live session with a tenant
    conn = session("app")
    with conn.cursor() as cur:
        cur.execute("SELECT get_tenant()")
        (context,) = cur.fetchone()
    counts = {view: len(_visible(conn, view, col)) for view, col in (("v_users", "user_id"),
                                                                      ("v_accounts", "account_id"))}
    a1, a2 = probe_data["A"]["accounts"]
    refused = sql_error(conn, "CALL app_transfer(%s, %s, 1)", (a1, a2))
    evidence.json("no-tenant", {"get_tenant": context, "rows": counts, "transfer": refused})
    assert writer.open
    assert context is None, f"a new connection inherited tenant {context}: the context leaks between connections"
    assert counts == {"v_users": 0, "v_accounts": 0}, f"views show rows without a tenant: {counts}"
    assert refused is not None and "no tenant context" in refused[1], f"a transfer without tenant: {refused}"
