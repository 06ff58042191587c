"""ZTM-TLS-1 judges MySQL's administrative interface like the main one whenever admin_address
is set: a weak admin_tls_version (or unpinned suites) fails naming it, a hardened one passes."""

from __future__ import annotations

import pytest

from ztm.policy import load_policy

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

ADMIN_TEST = "test_administrative_interface_tls_matches_the_policy"
APPROVED = ":".join(load_policy().tls["tls13_suites"])


@pytest.fixture
def mysql_lab(lab, lab_target):
    if lab_target.engine != "mysql":
        pytest.skip("not applicable: only MySQL has an administrative connection interface (admin_address)")
    return lab


def test_lab_without_admin_interface_is_not_applicable(mysql_lab, control):
    assert control("ZTM-TLS-1").outcome(ADMIN_TEST).outcome == "skipped"


def test_tls1_fails_on_a_weak_admin_tls_version(mysql_lab, control):
    with mysql_lab.reconfigured({"admin_address": "127.0.0.1", "admin_tls_version": "TLSv1.2,TLSv1.3"}):
        run = control("ZTM-TLS-1")
    run.assert_failed(ADMIN_TEST, "administrative interface (127.0.0.1:33062) allows TLSv1.2",
                      "admin_tls_version = TLSv1.2,TLSv1.3", "empty admin_tls_ciphersuites")
    assert run.outcome("test_only_allowed_protocol_versions_are_accepted").outcome == "passed"


def test_tls1_passes_on_a_hardened_admin_interface(mysql_lab, control):
    with mysql_lab.reconfigured({"admin_address": "127.0.0.1", "admin_tls_version": "TLSv1.3",
                                 "admin_tls_ciphersuites": APPROVED}):
        run = control("ZTM-TLS-1")
    assert run.outcome(ADMIN_TEST).outcome == "passed", run.outcome(ADMIN_TEST).message
