"""A tenant context left in tenant_context by a connection before a server restart cannot
be inherited by a new connection that gets the same connection id (ids restart at 1)."""

from __future__ import annotations

import pytest

from provision.lab import anchor_down, anchor_up
from ztm.db import connect

pytestmark = pytest.mark.lab


def _context_of_reused_id(lab, lab_target, overrides=None):
    """Set a tenant, restart, reconnect until the old connection id comes back; its context."""
    tenant = lab_target.raw["tenants"]["granted"][0]
    lab.restart(overrides)
    first = connect(lab_target, lab_target.roles["app"], database="securedb")
    with first.cursor() as cur:
        cur.execute("CALL security_set_tenant(%s)", (tenant,))
        cur.execute("SELECT CONNECTION_ID(), get_tenant()")
        connection_id, context = cur.fetchone()
    assert context == tenant
    first.close()  # its row stays behind in tenant_context, as after a crash
    lab.restart(overrides)  # connection ids start again from 1
    reused = None
    for _ in range(connection_id + 20):
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        with conn.cursor() as cur:
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


def test_without_the_init_file_the_stale_context_would_leak(lab, lab_target, quiet):
    """Why the server clears tenant_context at start: without it the probe above finds the leak."""
    try:
        connection_id, reused = _context_of_reused_id(lab, lab_target, {"init_file": None})
    finally:
        lab.restart()
    assert reused == lab_target.raw["tenants"]["granted"][0], (
        f"connection {connection_id} did not inherit the stale context even without init_file: "
        "the restart probe cannot tell the difference and proves nothing")
