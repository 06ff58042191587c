"""ZTM-TLS-2: plaintext transport is refused *because* it is plaintext.

Differential probe: the probe account (which itself demands nothing of the transport)
logs in over TLS with its credentials; the same credentials without TLS must be refused.
If the TLS login fails too, the reason of a plaintext refusal cannot be known: that is a
failure of the control, not a pass.
"""

from __future__ import annotations

import pytest

from ztm.db import try_login
from ztm.resources.variables import live_variables

pytestmark = pytest.mark.control("ZTM-TLS-2")


def test_plaintext_login_refused_while_tls_login_succeeds(target, evidence):
    probe = target.role("probe")
    over_tls = try_login(target, probe, present_cert=False)
    plaintext = try_login(target, probe, tls=False)
    evidence.json("login-probes", {"account": probe.user, "over_tls": over_tls.to_dict(),
                                   "plaintext": plaintext.to_dict()})
    assert over_tls.accepted, (
        f"the probe account {probe.user} cannot log in even over TLS (error {over_tls.errno}: {over_tls.message}); "
        "the reason of a plaintext refusal cannot be proven")
    assert not plaintext.accepted, (
        f"a plaintext (non-TLS) login as {probe.user} was accepted: the server does not require secure transport")
    assert plaintext.errno in target.dialect.insecure_transport_errors, (
        f"plaintext login refused with unexpected error {plaintext.errno} ({plaintext.message}); "
        f"{target.engine} refuses insecure transport with {sorted(target.dialect.insecure_transport_errors)}")


def test_require_secure_transport_is_on(admin, evidence):
    live = live_variables(admin, ["require_secure_transport", "have_ssl"])
    evidence.json("variables", live)
    assert live["require_secure_transport"] == "ON", (
        f"require_secure_transport = {live['require_secure_transport']}: the server accepts plaintext logins "
        "from accounts that do not require TLS themselves")
