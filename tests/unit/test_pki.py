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
