"""ZTM-TLS-3: every login account authenticates with a client certificate bound to it.

Configuration: each login account has REQUIRE SUBJECT ... AND ISSUER ... naming the
target's CA. Behaviour (each a differential probe against an accepted login with the
account's own certificate): no certificate, a foreign CA's lookalike, a revoked and an
expired certificate are refused; one account's certificate cannot log in as another.
"""

from __future__ import annotations

import pytest
from cryptography import x509

from ztm.db import try_login
from ztm.resources.accounts import grants_for, list_accounts, reach_of, tcp_reachable
from ztm.tls_scan import client_certificate_verdict
from ztm.x509_names import oneline

pytestmark = [pytest.mark.control("ZTM-TLS-3"), pytest.mark.needs("roles.admin")]

CERT_ROLES = ("app", "auditor", "migration")
# What the TLS layer says when it refuses each kind of bad certificate.
EXPECTED_ALERT = {"foreign_ca": "unknown ca", "revoked": "revoked", "expired": "expired"}


def _ca_subject(target) -> str:
    return oneline(x509.load_pem_x509_certificate(target.need_ca().read_bytes()).subject)


def _cert_subject(path) -> str:
    return oneline(x509.load_pem_x509_certificate(path.read_bytes()).subject)


@pytest.fixture(scope="module")
def own_certificate_login(target):
    """Baseline of every differential probe: the app account with its own certificate."""
    outcome = try_login(target, target.role("app"))
    assert outcome.accepted, (f"{target.role('app').user} cannot log in with its own certificate "
                              f"(error {outcome.errno}: {outcome.message}); refusals below would prove nothing")
    return outcome


def test_every_login_account_requires_bound_certificate(target, admin, evidence):
    accounts = list_accounts(admin, target.dialect)
    probe = target.roles["probe"].user if "probe" in target.roles else None
    ca_subject = _ca_subject(target) if target.ca is not None else None  # no CA: the binding is still judged
    reach = reach_of(admin)  # 'localhost' is reachable over TCP unless the server proves otherwise
    evidence.json("accounts", {"accounts": [a.to_dict() for a in accounts], "reach": reach.to_dict()})
    unbound = []
    for account in accounts:
        if account.locked or not tcp_reachable(account, reach) or account.user == probe:
            continue  # cannot log in over the network / the declared transport canary (checked below)
        if account.ssl_type != "SPECIFIED" or not account.x509_subject or not account.x509_issuer:
            unbound.append(f"{account.name} (REQUIRE {account.ssl_type or 'NONE'}, no SUBJECT and ISSUER binding)")
        elif ca_subject is not None and account.x509_issuer != ca_subject:
            unbound.append(f"{account.name} bound to issuer {account.x509_issuer!r}, not the target CA {ca_subject!r}")
    assert not unbound, "login accounts without a certificate bound to them: " + "; ".join(unbound)


def test_role_accounts_bound_to_their_certificates(target, admin):
    by_user = {a.user: a for a in list_accounts(admin, target.dialect)}
    wrong = []
    present = [role for role in CERT_ROLES if role in target.roles and target.roles[role].cert is not None]
    if not present:
        pytest.skip(f"not assessed: the target names none of the roles {', '.join(CERT_ROLES)} with a certificate")
    for role in present:
        identity = target.roles[role]
        account = by_user.get(identity.user)
        if account is None:
            wrong.append(f"{role}: account {identity.user} does not exist")
        elif account.x509_subject != _cert_subject(identity.cert):
            wrong.append(f"{role}: {identity.user} requires subject {account.x509_subject!r}, "
                         f"its certificate has {_cert_subject(identity.cert)!r}")
    assert not wrong, "; ".join(wrong)


def test_transport_canary_holds_no_privileges(target, admin, evidence):
    """The probe account (REQUIRE NONE, for ZTM-TLS-2) must be able to do nothing but log in."""
    probe = target.role("probe").user
    hosts = [a.host for a in list_accounts(admin, target.dialect) if a.user == probe]
    assert hosts, f"the probe account {probe} does not exist"
    grants = [g for host in hosts for g in grants_for(admin, probe, host)]
    evidence.json("probe-grants", grants)
    extra = [g for g in grants if not g.upper().startswith("GRANT USAGE ON *.*")]
    assert not extra, f"the probe account {probe} holds privileges beyond USAGE: {extra}"


@pytest.mark.needs("login.app", "tls")
def test_login_without_certificate_refused(target, own_certificate_login, evidence):
    outcome = try_login(target, target.role("app"), present_cert=False)
    evidence.json("no-certificate", outcome.to_dict())
    assert not outcome.accepted, f"{target.role('app').user} logged in over TLS without a client certificate"


@pytest.mark.needs("login.app", "tls")
@pytest.mark.parametrize("kind", sorted(EXPECTED_ALERT))
def test_bad_certificate_refused(target, own_certificate_login, kind, evidence):
    credential = target.negative.get(kind)
    if credential is None:
        pytest.skip(f"the target provides no {kind} certificate to try ([negative].{kind} in the target file)")
    outcome = try_login(target, target.role("app"), cert=credential.cert, key=credential.key)
    # The reason: in TLS 1.3 the server's alert follows the client's Finished, and a client
    # that writes its login at once can lose it to the reset; read it without writing.
    verdict = client_certificate_verdict(target.host, target.port, cert=credential.cert, key=credential.key,
                                         server_name=target.verify_name)
    evidence.json(f"{kind}-certificate", {"login": outcome.to_dict(), "tls_verdict": verdict})
    assert not outcome.accepted, (
        f"a {kind.replace('_', ' ')} certificate with subject {_cert_subject(credential.cert)!r} logged in as "
        f"{target.role('app').user}" + (": the CRL is not honoured" if kind == "revoked" else ""))
    reason = f"{outcome.message} / TLS verdict: {verdict}"
    assert EXPECTED_ALERT[kind] in reason.lower(), (
        f"the {kind} certificate was refused, but not for being {kind}: {reason}")


@pytest.mark.needs("login.auditor", "tls")
def test_certificate_of_one_account_cannot_log_in_as_another(target, evidence):
    own = try_login(target, target.role("auditor"))
    assert own.accepted, f"auditor cannot log in with its own certificate: {own.message}"
    app = target.role("app")
    outcome = try_login(target, target.role("auditor"), cert=app.cert, key=app.key)
    evidence.json("cross-account", {"own": own.to_dict(), "with_app_certificate": outcome.to_dict()})
    assert not outcome.accepted, f"{app.user}'s certificate logged in as {target.role('auditor').user}"
