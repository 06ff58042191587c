"""The lab PKI: bindings, negative certificates that differ only in what makes them bad, key modes."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from provision.pki import PkiLayout, cert_subject_issuer, issue_all, revoked_serials

USERS = {"app": "app_user", "auditor": "auditor"}


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_issues_bound_certificates_and_private_keys_0600(tmp_path):
    layout = PkiLayout(tmp_path)
    issue_all(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    assert cert_subject_issuer(layout.client("app", "pem")) == ("/O=ZTM Lab/CN=app_user",
                                                                 "/O=ZTM Lab/CN=ZTM Lab Root CA")
    for key in [layout.ca_key, layout.server("key"), layout.client("app", "key"), layout.signer("key"),
                *(layout.negative(k, "key") for k in ("revoked", "expired", "foreign_ca"))]:
        assert key.stat().st_mode & 0o777 == 0o600, key
    san = load(layout.server("pem")).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "db.ztm.lab" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.77.0.10"]


def test_negative_certificates_differ_only_in_their_defect(tmp_path):
    layout = PkiLayout(tmp_path)
    issue_all(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    good = load(layout.client("app", "pem"))
    revoked, expired, foreign = (load(layout.negative(k, "pem")) for k in ("revoked", "expired", "foreign_ca"))
    ca = load(layout.ca_cert)
    for cert in (revoked, expired, foreign):
        assert cert.subject == good.subject and cert.issuer == ca.subject
    assert revoked.serial_number in revoked_serials(layout) and good.serial_number not in revoked_serials(layout)
    assert expired.not_valid_after_utc < dt.datetime.now(dt.UTC)
    with pytest.raises(InvalidSignature):  # same issuer name, different key
        foreign.verify_directly_issued_by(ca)
    good.verify_directly_issued_by(ca)


def test_rotation_keeps_the_ca_and_reissues_leaves(tmp_path):
    layout = PkiLayout(tmp_path)
    issue_all(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    ca_before, leaf_before = layout.ca_cert.read_bytes(), layout.client("app", "pem").read_bytes()
    issue_all(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    assert layout.ca_cert.read_bytes() == ca_before
    assert layout.client("app", "pem").read_bytes() != leaf_before


def test_rotation_revokes_what_it_replaces_as_superseded(tmp_path):
    from provision.pki import revocation_reasons, rotate

    layout = PkiLayout(tmp_path)
    issue_all(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    before = {p: load(p).serial_number for p in (layout.server("pem"), layout.client("app", "pem"),
                                                 layout.client("auditor", "pem"), layout.signer("pem"))}
    first_negative = load(layout.negative("revoked", "pem")).serial_number
    superseded = rotate(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    reasons = revocation_reasons(layout)
    assert sorted(r.serial for r in superseded) == sorted(before.values())
    for path, serial in before.items():
        assert reasons[serial] == x509.ReasonFlags.superseded, path
        assert load(path).serial_number != serial and load(path).serial_number not in reasons
    # What was revoked before stays revoked; the new negative certificate is revoked too.
    assert reasons[first_negative] == x509.ReasonFlags.key_compromise
    assert reasons[load(layout.negative("revoked", "pem")).serial_number] == x509.ReasonFlags.key_compromise
    assert load(layout.negative("expired", "pem")).serial_number not in reasons  # refused for its expiry alone
    crl = x509.load_pem_x509_crl(layout.crl.read_bytes())
    assert crl.is_signature_valid(load(layout.ca_cert).public_key())
    # A second rotation keeps every earlier entry.
    rotate(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    assert set(reasons) <= set(revocation_reasons(layout))


def test_rotation_without_a_pki_creates_nothing(tmp_path):
    from provision.pki import rotate
    from ztm.errors import UserError

    with pytest.raises(UserError, match="no PKI to rotate"):
        rotate(PkiLayout(tmp_path / "pki"), server_name="db", server_address="10.77.0.10", users=USERS)
    assert not (tmp_path / "pki").exists()


def test_ztm_pki_rotate_without_a_lab_is_one_line_and_creates_nothing(tmp_path):
    import os
    import subprocess
    import sys

    lab_dir = tmp_path / "no-lab"
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "pki", "--dir", str(lab_dir), "rotate"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"ztm: no lab in {lab_dir}: run 'ztm lab up' first\n"
    assert not lab_dir.exists()


def test_ztm_pki_rotate_signer_without_a_lab_is_one_line_and_creates_nothing(tmp_path):
    import os
    import subprocess
    import sys

    lab_dir = tmp_path / "no-lab"
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "pki", "--dir", str(lab_dir), "rotate-signer"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"ztm: no lab in {lab_dir}: run 'ztm lab up' first\n"
    assert not lab_dir.exists()


def test_the_evidence_signer_has_its_own_ca_and_a_signers_extensions(tmp_path):
    from provision.pki import EVIDENCE_CA_NAME

    layout = PkiLayout(tmp_path)
    issue_all(layout, server_name="db.ztm.lab", server_address="10.77.0.10", users=USERS)
    signer, ca, db_ca = load(layout.signer("pem")), load(layout.evidence_ca_cert), load(layout.ca_cert)
    assert ca.subject.rfc4514_string() == f"CN={EVIDENCE_CA_NAME},O=ZTM Lab" and ca.public_key() != db_ca.public_key()
    signer.verify_directly_issued_by(ca)
    with pytest.raises((InvalidSignature, ValueError)):
        signer.verify_directly_issued_by(db_ca)
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]
    assert x509.load_pem_x509_crl(layout.evidence_crl.read_bytes()).is_signature_valid(ca.public_key())
