"""A tenant context cannot outlive its session: not into a new connection that gets the same
connection id after a server restart (ids restart at 1), not through COM_RESET_CONNECTION
(what a pool sends between requests), not through a change-user to the same account."""

from __future__ import annotations

import pytest

from provision.lab import anchor_down, anchor_up
from ztm.db import connect, reset_connection

pytestmark = pytest.mark.lab


def _context_of_reused_id(lab, lab_target, overrides=None, forged_key: bool = False):
    """Set a tenant, restart, reconnect until the old connection id comes back; its context
    (read with the old session key in @ztm_tenant_session when ``forged_key``)."""
    tenant = lab_target.raw["tenants"]["granted"][0]
    lab.restart(overrides)
    first = connect(lab_target, lab_target.roles["app"], database=lab_target.database)
    with first.cursor() as cur:
        cur.execute("CALL security_set_tenant(%s)", (tenant,))
        cur.execute("SELECT CONNECTION_ID(), get_tenant(), @ztm_tenant_session")
        connection_id, context, key = cur.fetchone()
    assert context == tenant
    first.close()  # its row stays behind in tenant_context, as after a crash
    lab.restart(overrides)  # connection ids start again from 1
    reused = None
    for _ in range(connection_id + 20):
        conn = connect(lab_target, lab_target.roles["app"], database=lab_target.database)
        with conn.cursor() as cur:
            if forged_key:
                cur.execute("SET @ztm_tenant_session = %s", (key,))
            cur.execute("SELECT CONNECTION_ID(), get_tenant()")
            this_id, inherited = cur.fetchone()
        if this_id == connection_id:
            reused = inherited
            conn.close()
            break
        conn.close()
        if this_id > connection_id:
            pytest.fail(f"connection ids after the restart skipped {connection_id}; cannot reproduce the reuse")
    assert this_id == connection_id, "no connection received the old id"
    return connection_id, reused


@pytest.fixture
def quiet(lab):
    """No other client may take connection ids while the test waits for one to come back."""
    anchor_down(lab)
    yield
    anchor_up(lab)


def test_stale_context_with_a_reused_connection_id_does_not_leak(lab, lab_target, quiet):
    connection_id, reused = _context_of_reused_id(lab, lab_target)
    assert reused is None, f"connection {connection_id} inherited tenant {reused} from before the restart"


def test_without_the_init_file_the_session_key_still_protects(lab, lab_target, quiet):
    """The server empties tenant_context at start (hygiene); the session key is what protects.
    Without the init file the stale row stays and still does not leak; the same probe holding
    the old key does read it, so the probe can see a leak and the key is what prevents it."""
    try:
        connection_id, reused = _context_of_reused_id(lab, lab_target, {"init_file": None})
        assert reused is None, f"connection {connection_id} inherited tenant {reused} without holding its key"
        connection_id, forged = _context_of_reused_id(lab, lab_target, {"init_file": None}, forged_key=True)
    finally:
        lab.restart()
    assert forged == lab_target.raw["tenants"]["granted"][0], (
        f"connection {connection_id} did not read the stale context even with its key: the restart probe "
        "cannot tell the difference and proves nothing")


def test_a_reset_or_change_user_connection_has_no_tenant(lab_target):
    tenant = lab_target.raw["tenants"]["granted"][0]
    conn = connect(lab_target, lab_target.roles["app"], database=lab_target.database)
    try:
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            cur.execute("SELECT get_tenant(), CONNECTION_ID()")
            before, connection_id = cur.fetchone()
        reset_connection(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT get_tenant(), CONNECTION_ID()")
            after_reset, same_id = cur.fetchone()
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            cur.execute("SELECT get_tenant()")
            (again,) = cur.fetchone()
    finally:
        conn.close()
    assert before == tenant and same_id == connection_id, "the probe did not keep its connection"
    assert after_reset is None, f"after COM_RESET_CONNECTION the connection still acts for tenant {after_reset}"
    assert again == tenant, "after the reset the tenant cannot be set again: the probe proves nothing"
