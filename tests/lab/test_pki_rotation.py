"""`ztm pki rotate` on a running lab: new certificates in service, the replaced ones revoked.

The proof is behavioural: after the rotation the server presents the new certificate, the
accounts log in with their new certificates, and the app's *old* certificate (same subject,
same CA) is refused because the CRL now lists it as superseded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from cryptography import x509

from provision.pki import revocation_reasons
from ztm.db import try_login
from ztm.tls_scan import client_certificate_verdict, handshake

pytestmark = pytest.mark.lab


def _serial(path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_rotation_puts_new_certificates_in_service_and_revokes_the_old(lab, lab_target, control, tmp_path):
    pki = lab.pki
    old_ca = pki.ca_cert.read_bytes()
    old_server, old_app = _serial(pki.server("pem")), _serial(pki.client("app", "pem"))
    old_signer, old_evidence_ca = _serial(pki.signer("pem")), pki.evidence_ca_cert.read_bytes()
    kept = {suffix: shutil.copy(pki.client("app", suffix), tmp_path / f"old-app.{suffix}") for suffix in ("pem", "key")}

    done = subprocess.run([sys.executable, "-m", "ztm.cli", "pki", "--dir", str(lab.dir), "rotate"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "revoked as superseded" in done.stdout

    assert pki.ca_cert.read_bytes() == old_ca, "rotation must keep the trust root"
    reasons = revocation_reasons(pki)
    assert reasons.get(old_server) == x509.ReasonFlags.superseded
    assert reasons.get(old_app) == x509.ReasonFlags.superseded
    assert pki.evidence_ca_cert.read_bytes() == old_evidence_ca, "rotation must keep the evidence CA"
    assert reasons.get(old_signer) == x509.ReasonFlags.superseded, "the rotated-out evidence signer is not revoked"
    assert _serial(pki.signer("pem")) not in reasons
    new_server = _serial(pki.server("pem"))
    assert new_server != old_server and new_server not in reasons

    presented = handshake(lab_target.host, lab_target.port, ca=lab_target.ca, server_name=lab_target.server_name,
                          timeout=60)
    assert presented.probe.accepted, presented.probe.reason
    assert presented.chain[0].serial_number == new_server, "the server still presents the replaced certificate"

    app = lab_target.roles["app"]
    assert try_login(lab_target, app).accepted, "the app cannot log in with its new certificate"
    old_login = try_login(lab_target, app, cert=kept["pem"], key=kept["key"])
    verdict = client_certificate_verdict(lab_target.host, lab_target.port, cert=kept["pem"], key=kept["key"],
                                         server_name=lab_target.server_name, wait=30)
    assert not old_login.accepted, "the replaced app certificate still logs in"
    assert verdict is not None and "revoked" in verdict, f"old certificate refused, but not as revoked: {verdict}"

    for control_id in ("ZTM-TLS-1", "ZTM-TLS-3"):
        control(control_id).assert_all_passed()
