"""The trust pieces one at a time: trusted time with a controlled clock, the evidence CA and its
rotation, the signer check at run start, OSCAL honesty, terminal-safe output."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.bundle import write_bundle
from evidence.oscal import assessment_results
from evidence.results import TestResult
from evidence.sign import check_signer
from evidence.verify import verify_bundle
from provision import pki
from tests.unit.evidence_forge import Lab, content, evidence_issuer, make_pki, pem, sign, start_tsa
from tests.unit.test_target import MINIMAL
from ztm.errors import UserError
from ztm.text import printable
from ztm.tls_scan import parse_greeting


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    layout = make_pki(tmp_path_factory.mktemp("pki"))
    proc, url = start_tsa(layout)
    yield Lab(layout, url, tmp_path_factory.mktemp("work"))
    proc.terminate()
    proc.wait(timeout=10)


def _short_lived(lab: Lab, minutes: int) -> tuple[Ed25519PrivateKey, bytes]:
    """A signer valid from 5 minutes ago for ``minutes`` minutes, from the lab's evidence CA."""
    ev = evidence_issuer(lab)
    key = Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "short")]))
            .issuer_name(ev.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(minutes=minutes))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ev.key.public_key()), critical=False)
            .sign(ev.key, hashes.SHA256()))
    return key, pem(cert)


def test_timestamped_bundle_verifies_after_its_signer_expired_and_untimestamped_does_not(lab):
    """A clock we control (verify_bundle's ``now``), not sleeping: a year later the signer has long expired."""
    key, cert = _short_lived(lab, minutes=10)
    stamped = sign(lab, lab.work / "stamped.tar.gz", key=key, cert_pem=cert)
    bare = sign(lab, lab.work / "bare.tar.gz", key=key, cert_pem=cert, stamp=False)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    assert verify_bundle(stamped, ca=lab.ca).ok and verify_bundle(bare, ca=lab.ca).ok  # today both
    result = verify_bundle(stamped, ca=lab.ca, now=later)
    assert result.ok, result.problems
    assert any("valid at the timestamp" in n for n in result.notes), result.notes
    problems = verify_bundle(bare, ca=lab.ca, now=later).problems
    assert len(problems) == 1 and "not a valid signer" in problems[0] and "not valid at validation time" in problems[0]


def test_a_token_from_an_untrusted_tsa_is_refused(lab, tmp_path):
    stamped = sign(lab, tmp_path / "b.tar.gz")
    problems = verify_bundle(stamped, ca=lab.ca, tsa_ca=lab.layout.ca_cert).problems  # the database CA
    assert len(problems) == 1 and problems[0].startswith("MANIFEST.sha256.tsr: the timestamp token does not verify")


def test_lab_signer_comes_from_the_evidence_ca_and_rotation_revokes_it(lab, tmp_path):
    import shutil

    layout = pki.PkiLayout(tmp_path / "pki")
    shutil.copytree(lab.layout.root, layout.root)
    assert pki.cert_subject_issuer(layout.signer("pem"))[1] == "/O=ZTM Lab/CN=ZTM Lab Evidence CA"
    assert layout.evidence_ca_cert.read_bytes() != layout.ca_cert.read_bytes()
    for key in (layout.evidence_ca_key, layout.signer("key")):
        assert key.stat().st_mode & 0o777 == 0o600, key
    before = x509.load_pem_x509_certificate(layout.signer("pem").read_bytes())
    old_bundle = tmp_path / "old.tar.gz"
    write_bundle(old_bundle, content(), pki._load_key(layout.signer("key")), layout.signer("pem").read_bytes())
    superseded = pki.rotate_signer(layout)
    after = x509.load_pem_x509_certificate(layout.signer("pem").read_bytes())
    assert [r.serial for r in superseded] == [before.serial_number] and after.serial_number != before.serial_number
    assert pki.revocation_reasons(layout)[before.serial_number] == x509.ReasonFlags.superseded
    problems = verify_bundle(old_bundle, ca=layout.evidence_ca_cert, crl=layout.evidence_crl).problems
    assert any("revoked in the CRL" in p for p in problems), problems
    assert verify_bundle(old_bundle, ca=layout.evidence_ca_cert).ok  # without the CRL: still the evidence CA's
    new_bundle = sign(Lab(layout, lab.tsa_url, tmp_path), tmp_path / "new.tar.gz")
    assert verify_bundle(new_bundle, ca=layout.evidence_ca_cert, crl=layout.evidence_crl).ok
    # The database CA's CRL is not the evidence CA's: refused as not from the signer's issuer.
    problems = verify_bundle(new_bundle, ca=layout.evidence_ca_cert, crl=layout.crl).problems
    assert any("CRL is not signed by the signer certificate's issuer" in p for p in problems), problems


def test_a_run_with_a_key_but_no_certificate_warns_at_start(lab, tmp_path):
    key = lab.layout.signer("key")
    assert "can only be checked with --pubkey" in (check_signer(key, None) or "")
    assert check_signer(key, lab.layout.signer("pem")) is None
    with pytest.raises(UserError, match="does not certify the signing key"):
        check_signer(key, lab.layout.client("app", "pem"))
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(lab.layout.signer("key").read_bytes().replace(b"PRIVATE", b"PUBLIC") +
                      lab.layout.signer("pem").read_bytes())
    with pytest.raises(UserError, match="certificates only"):
        check_signer(key, mixed)


def test_pytest_run_with_key_but_no_certificate_says_so_before_tests(lab, pytester):
    import shutil

    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_x="def test_ok():\n    pass\n")
    key = pytester.path / "signer.key"
    shutil.copy(lab.layout.signer("key"), key)
    key.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--evidence-out",
                           str(pytester.path / "b.tar.gz"), "--evidence-key", str(key)], cwd=pytester.path,
                          capture_output=True, text=True, timeout=300)
    assert "WARNING: signing with" in done.stderr and "can only be checked with --pubkey" in done.stderr, done.stderr
    assert done.stdout.index("test_x.py") > 0  # the tests ran after the warning (a warning, not a stop)


def test_a_control_whose_tests_all_skipped_is_not_assessed():
    from evidence.catalog import load_catalog

    skipped = TestResult("controls/test_x.py::test_a", "test_a", ["ZTM-TLS-1"], outcome="skipped", message="no TLS")
    errored = TestResult("controls/test_x.py::test_b", "test_b", ["ZTM-TLS-2"], outcome="error", message="boom")
    passed = TestResult("controls/test_x.py::test_c", "test_c", ["ZTM-TLS-3"], outcome="passed")
    when = "2026-01-01T00:00:00Z"
    doc = assessment_results(load_catalog(), [skipped, errored, passed], target_name="t", started=when,
                             finished=when, version="0", tools={})
    props = {f["target"]["target-id"]: {p["name"]: p["value"] for p in f["props"]}
             for f in doc["assessment-results"]["results"][0]["findings"]}
    assert props["ztm-tls-1"]["assessment"] == "not-assessed"
    assert props["ztm-tls-2"]["assessment"] == "not-assessed"
    assert props["ztm-tls-3"]["assessment"] == "assessed"


def test_printable_escapes_control_characters():
    assert printable("x\nverified: \x1b[32mok\r\u202e") == "x\\nverified: \\x1b[32mok\\r\\u202e"
    assert printable("plain name-1.json") == "plain name-1.json"
    assert printable("a" * 400).endswith("...") and len(printable("a" * 400)) == 303


def test_server_greeting_and_error_packet_are_printed_escaped():
    version = b"8.0.0\x1b]0;pwned\x07\nverified"
    payload = bytes([10]) + version + b"\0" + bytes(4 + 8 + 1) + b"\xff\xf7" + bytes(20)
    assert parse_greeting(payload).server_version == "8.0.0\\x1b]0;pwned\\x07\\nverified"
    error = b"\xff" + (1130).to_bytes(2, "little") + b"#HY000Host \x1b[2J blocked\nok"
    with pytest.raises(ConnectionRefusedError) as refused:
        parse_greeting(error)
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value) and "\\x1b[2J" in str(refused.value)


def _plugin_run(pytester, lab: Lab, tsa_url: str) -> tuple[subprocess.CompletedProcess[str], object]:
    import shutil
    import tarfile

    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_x="def test_ok():\n    pass\n")
    key, cert = pytester.path / "signer.key", pytester.path / "signer.pem"
    shutil.copy(lab.layout.signer("key"), key)
    key.chmod(0o600)
    shutil.copy(lab.layout.signer("pem"), cert)
    target = pytester.path / "target.toml"
    (pytester.path / "secrets").mkdir(exist_ok=True)
    (pytester.path / "secrets" / "probe").write_text("unused\n")  # the target's secret files are checked at start
    target.write_text(MINIMAL + f'[evidence]\nsigning_key = "{key}"\nsigning_cert = "{cert}"\ntsa_url = "{tsa_url}"\n')
    out = pytester.path / "b.tar.gz"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", str(target),
                           "--evidence-out", str(out)], cwd=pytester.path, capture_output=True, text=True, timeout=300)
    assert out.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    with tarfile.open(out) as tar:
        return done, (out, tar.getnames())


def test_the_targets_tsa_time_stamps_the_bundle(lab, pytester):
    _, (out, names) = _plugin_run(pytester, lab, lab.tsa_url)
    assert "bundle/MANIFEST.sha256.tsr" in names
    result = verify_bundle(out, ca=lab.ca)
    assert result.ok and any("valid at the timestamp" in n for n in result.notes), result.problems + result.notes


def test_an_unreachable_tsa_is_a_warning_and_the_bundle_is_judged_at_verification_time(lab, pytester):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done, (out, names) = _plugin_run(pytester, lab, f"http://127.0.0.1:{port}/")
    assert "bundle/MANIFEST.sha256.tsr" not in names
    assert "WARNING: no timestamp token in the bundle" in done.stdout, done.stdout[-2000:]
    result = verify_bundle(out, ca=lab.ca)
    assert result.ok and any("valid at now (no timestamp token)" in n for n in result.notes), result.notes
