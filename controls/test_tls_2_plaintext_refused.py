"""ZTM-TLS-2: plaintext transport is refused *because* it is plaintext.

Differential probe: the probe account (which itself demands nothing of the transport)
logs in without TLS, which must be refused, and over TLS with the same credentials, which
must succeed. An accepted plaintext login fails the control at once (on a server that
offers no TLS at all too, and whether or not the target names a CA); if the TLS login
fails as well, the reason of a plaintext refusal cannot be known: that is a failure of
the control, not a pass.
"""

from __future__ import annotations

import pytest

from ztm.db import try_login
from ztm.resources.variables import live_variables

pytestmark = [pytest.mark.control("ZTM-TLS-2"), pytest.mark.needs("server")]


def test_plaintext_login_refused_while_tls_login_succeeds(target, preflight, evidence):
    probe = target.role("probe")
    plaintext = try_login(target, probe, tls=False)
    probes = {"account": probe.user, "plaintext": plaintext.to_dict(), "tls_offered": preflight.tls_offered}
    if plaintext.accepted:  # a finding on its own: no CA is needed to see it (nor TLS on the server)
        evidence.json("login-probes", probes)
    no_tls = " (and it offers no TLS at all)" if preflight.tls_offered is False else ""
    assert not plaintext.accepted, (f"a plaintext (non-TLS) login as {probe.user} was accepted: the server does not "
                                    f"require secure transport{no_tls}")
    over_tls = try_login(target, probe, present_cert=False)  # MissingInput (not assessed) without [tls].ca
    evidence.json("login-probes", {**probes, "over_tls": over_tls.to_dict()})
    assert over_tls.accepted, (
        f"the probe account {probe.user} cannot log in even over TLS (error {over_tls.errno}: {over_tls.message}); "
        "the reason of a plaintext refusal cannot be proven")
    assert plaintext.errno in target.dialect.insecure_transport_errors, (
        f"plaintext login refused with unexpected error {plaintext.errno} ({plaintext.message}); "
        f"{target.engine} refuses insecure transport with {sorted(target.dialect.insecure_transport_errors)}")


def test_require_secure_transport_is_on(admin, evidence):
    live = live_variables(admin, ["require_secure_transport", "have_ssl"])
    evidence.json("variables", live)
    assert live["require_secure_transport"] == "ON", (
        f"require_secure_transport = {live['require_secure_transport']}: the server accepts plaintext logins "
        "from accounts that do not require TLS themselves")
