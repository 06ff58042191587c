"""ZTM-TLS-1, ZTM-TLS-2, ZTM-TLS-3, ZTM-CFG-1 fail, and say why, when the lab is broken the way each exists to catch."""

import os
import shutil

import pytest

from provision.engines.base import mysql_ids
from provision.netns import ACCOUNT_HOST
from ztm.policy import load_policy

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

APPROVED_TLS13_SUITES = load_policy().tls["tls13_suites"]  # zero-trust, what the lab runs
PROBE = f"'ztm_probe'@'{ACCOUNT_HOST}'"
AUDITOR = f"'auditor'@'{ACCOUNT_HOST}'"


# -- ZTM-TLS-2 -----------------------------------------------------------------------
def test_tls2_fails_when_secure_transport_switched_off_at_runtime(admin_change, control):
    with admin_change(["SET GLOBAL require_secure_transport = OFF"], ["SET GLOBAL require_secure_transport = ON"]):
        run = control("ZTM-TLS-2")
    run.assert_failed("test_plaintext_login_refused_while_tls_login_succeeds", "plaintext", "accepted")
    run.assert_failed("test_require_secure_transport_is_on", "require_secure_transport = OFF")


def test_tls2_fails_when_config_disables_secure_transport(lab, control):
    with lab.reconfigured({"require_secure_transport": "OFF"}):
        run = control("ZTM-TLS-2")
    run.assert_failed("test_plaintext_login_refused_while_tls_login_succeeds", "plaintext", "accepted")


def test_tls2_cannot_pass_when_probe_cannot_log_in_at_all(admin_change, control, lab):
    """A plaintext refusal proves nothing if the probe is refused over TLS too."""
    with admin_change([f"ALTER USER {PROBE} IDENTIFIED BY 'not-the-probe-password'"],
                      [f"ALTER USER {PROBE} IDENTIFIED BY '{lab.password('probe')}'"]):
        run = control("ZTM-TLS-2")
    run.assert_failed("test_plaintext_login_refused_while_tls_login_succeeds", "cannot log in even over TLS")


# -- ZTM-TLS-3 -----------------------------------------------------------------------
def test_tls3_fails_for_account_without_certificate_binding(admin_change, control, lab_target):
    from provision.pki import cert_subject_issuer

    subject, issuer = cert_subject_issuer(lab_target.roles["auditor"].cert)
    with admin_change([f"ALTER USER {AUDITOR} REQUIRE NONE"],
                      [f"ALTER USER {AUDITOR} REQUIRE SUBJECT '{subject}' AND ISSUER '{issuer}'"]):
        run = control("ZTM-TLS-3")
    run.assert_failed("test_every_login_account_requires_bound_certificate", AUDITOR, "REQUIRE NONE")


def test_tls3_takes_no_role_for_a_login_account(admin_change, control, lab_target):
    """Roles (and MariaDB's PUBLIC) are rows of mysql.user, but nobody logs in as one: they must
    not be reported as unbound logins, while a real unbound account next to them still is."""
    from provision.pki import cert_subject_issuer

    roles = ["CREATE ROLE ztm_test_role", "GRANT SELECT ON securedb.tenants TO ztm_test_role"]
    undo = ["DROP ROLE ztm_test_role"]
    if lab_target.dialect.public_role:
        roles.append("GRANT SELECT ON securedb.tenants TO PUBLIC")
        undo.append("REVOKE SELECT ON securedb.tenants FROM PUBLIC")
    subject, issuer = cert_subject_issuer(lab_target.roles["auditor"].cert)
    with admin_change(roles, undo):
        clean = control("ZTM-TLS-3")
        with admin_change([f"ALTER USER {AUDITOR} REQUIRE NONE"],
                          [f"ALTER USER {AUDITOR} REQUIRE SUBJECT '{subject}' AND ISSUER '{issuer}'"]):
            broken = control("ZTM-TLS-3")
    assert clean.outcome("test_every_login_account_requires_bound_certificate").outcome == "passed", \
        clean.outcome("test_every_login_account_requires_bound_certificate").message
    message = broken.assert_failed("test_every_login_account_requires_bound_certificate", AUDITOR, "REQUIRE NONE")
    assert "ztm_test_role" not in message and "PUBLIC" not in message, message


def test_tls3_fails_when_crl_not_configured(lab, control):
    with lab.reconfigured({"ssl_crl": None}):
        run = control("ZTM-TLS-3")
    run.assert_failed("test_bad_certificate_refused", "revoked", "CRL is not honoured")


def test_tls3_fails_when_any_certificate_of_the_ca_is_accepted(admin_change, control, lab_target):
    from provision.pki import cert_subject_issuer

    subject, issuer = cert_subject_issuer(lab_target.roles["auditor"].cert)
    with admin_change([f"ALTER USER {AUDITOR} REQUIRE X509"],
                      [f"ALTER USER {AUDITOR} REQUIRE SUBJECT '{subject}' AND ISSUER '{issuer}'"]):
        run = control("ZTM-TLS-3")
    run.assert_failed("test_certificate_of_one_account_cannot_log_in_as_another", "certificate logged in as auditor")
    run.assert_failed("test_every_login_account_requires_bound_certificate", "REQUIRE X509")


def test_tls3_fails_when_probe_gains_privileges(admin_change, control):
    with admin_change([f"GRANT PROCESS ON *.* TO {PROBE}"], [f"REVOKE PROCESS ON *.* FROM {PROBE}"]):
        run = control("ZTM-TLS-3")
    run.assert_failed("test_transport_canary_holds_no_privileges", "beyond USAGE", "PROCESS")


# -- ZTM-CFG-1 -----------------------------------------------------------------------
def test_cfg1_fails_when_local_infile_enabled_at_runtime(admin_change, control):
    with admin_change(["SET GLOBAL local_infile = 1"], ["SET GLOBAL local_infile = 0"]):
        run = control("ZTM-CFG-1")
    run.assert_failed("test_live_variables_hardened", "local_infile = ON")


def test_cfg1_fails_when_sql_mode_lax_on_disk(lab, control):
    with lab.reconfigured({"sql_mode": "NO_ENGINE_SUBSTITUTION"}):
        run = control("ZTM-CFG-1")
    run.assert_failed("test_live_variables_hardened", "sql_mode")
    run.assert_failed("test_on_disk_configuration_hardened", "sql_mode = NO_ENGINE_SUBSTITUTION")


def test_cfg1_fails_when_the_server_lets_clients_set_sysdate(lab, control):
    """--sysdate-is-now makes SYSDATE() follow a client's SET timestamp: the trail's event times
    would be client-settable. The server is shown to honour it, and CFG-1 names it."""
    with lab.reconfigured({"sysdate-is-now": "1"}):
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("SET timestamp = 1000000000")
            cur.execute("SELECT YEAR(SYSDATE())")
            (year,) = cur.fetchone()
        run = control("ZTM-CFG-1")
    assert year == 2001, "the server ignored sysdate-is-now: the breakage did not take effect"
    run.assert_failed("test_forbidden_options_are_off", "sysdate_is_now is on in the configuration")


def test_cfg1_fails_when_crl_missing_from_config(lab, control):
    with lab.reconfigured({"ssl_crl": None}):
        run = control("ZTM-CFG-1")
    run.assert_failed("test_on_disk_configuration_hardened", "ssl_crl is not set")
    run.assert_failed("test_live_variables_hardened", "ssl_crl is empty")


def test_cfg1_fails_when_set_persist_overrides_hardening(lab, lab_target, admin_change, control):
    if not lab_target.dialect.persisted_config_supported:
        pytest.skip(f"{lab_target.engine} has no SET PERSIST, so no persisted variable can override the config")
    with admin_change(["SET PERSIST local_infile = ON"], ["RESET PERSIST local_infile", "SET GLOBAL local_infile = 0"]):
        run = control("ZTM-CFG-1")
    run.assert_failed("test_persisted_variables_hardened", "SET PERSIST", "local_infile")
    run.assert_failed("test_live_variables_hardened", "local_infile = ON")


def test_cfg1_fails_when_a_drop_in_file_enables_local_infile(lab, control):
    """The main my.cnf stays hardened; a file in the folder it !includedir's undoes it, as an
    operator's conf.d/99-local.cnf would. The restart proves the server reads it too."""
    drop_in = lab.server.conf_d / "99-local.cnf"
    drop_in.write_text("[mysqld]\nlocal_infile = 1\n")
    try:
        lab.restart()
        run = control("ZTM-CFG-1")
    finally:
        drop_in.unlink()
        lab.restart()
    run.assert_failed("test_on_disk_configuration_hardened", "local_infile = 1", str(drop_in))
    run.assert_failed("test_live_variables_hardened", "local_infile = ON")


# -- ZTM-TLS-1 -----------------------------------------------------------------------
def test_tls1_fails_when_tls12_is_enabled(lab, lab_target, control):
    # A TLS 1.2 cipher must be allowed too, or TLS 1.2 would still fail for want of a suite.
    ciphers = lab_target.dialect.cipher_options(APPROVED_TLS13_SUITES, ["ECDHE-ECDSA-AES256-GCM-SHA384"])
    with lab.reconfigured({"tls_version": "TLSv1.2,TLSv1.3", **ciphers}):
        run = control("ZTM-TLS-1")
    run.assert_failed("test_only_allowed_protocol_versions_are_accepted", "TLSv1.2 accepted")
    run.assert_failed("test_only_approved_suites_are_accepted", "ECDHE-ECDSA-AES256-GCM-SHA384")


def test_tls1_fails_when_aes128_suite_is_added(lab, lab_target, control):
    with lab.reconfigured(lab_target.dialect.cipher_options([*APPROVED_TLS13_SUITES, "TLS_AES_128_GCM_SHA256"])):
        run = control("ZTM-TLS-1")
    run.assert_failed("test_only_approved_suites_are_accepted", "unapproved", "TLS_AES_128_GCM_SHA256")


def test_tls1_fails_when_server_presents_a_certificate_not_made_for_it(lab, control):
    """A certificate of the right CA but for another identity (the app's client certificate: another
    name, client-only purpose) must not pass as the server's."""
    tls = lab.server.tls
    for suffix in ("pem", "key"):  # where the server (also a chrooted one) can read it, as its own key files are
        dest = tls / f"wrong-name.{suffix}"
        shutil.copyfile(lab.pki.client("app", suffix), dest)
        os.chown(dest, *mysql_ids())
    try:
        with lab.reconfigured({"ssl_cert": str(tls / "wrong-name.pem"), "ssl_key": str(tls / "wrong-name.key")}):
            run = control("ZTM-TLS-1")
    finally:
        for suffix in ("pem", "key"):
            (tls / f"wrong-name.{suffix}").unlink()
    run.assert_failed("test_server_certificate_is_valid_for_the_target", "does not verify", "for name db.ztm.lab",
                     "unsuitable certificate purpose")
