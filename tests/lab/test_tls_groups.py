"""ZTM-TLS-1's key-exchange groups on the lab: the scanner agrees with an independent scanner
(sslscan, STARTTLS for MySQL), every group is in the evidence with its verdict, and a policy
that requires post-quantum key exchange fails naming the hybrid groups the server lacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.control_runner import run_control
from ztm.tls_scan import CLASSICAL_GROUPS, HYBRID_GROUPS, scan

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]


def _sslscan(host: str, port: int) -> ET.Element:
    if shutil.which("sslscan") is None:
        pytest.fail("sslscan is not installed (Debian package sslscan, in tasks.py APT_PACKAGES)")
    out = subprocess.run(["sslscan", "--no-colour", "--starttls-mysql", "--xml=-", f"{host}:{port}"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return ET.fromstring(out[out.index("<?xml"):])


def test_scanner_agrees_with_sslscan_on_versions_suites_and_classical_groups(lab_target):
    ours = scan(lab_target.host, lab_target.port, connect_timeout=30)
    theirs = _sslscan(lab_target.host, lab_target.port)
    versions = {f"TLSv{p.get('version')}".replace("TLSv1.0", "TLSv1") for p in theirs.iter("protocol")
                if p.get("type") == "tls" and p.get("enabled") == "1"}
    assert set(ours.accepted_protocols()) == versions
    probed = {*ours.tls13_suites, *ours.tls12_suites}
    suites = {c.get("cipher") for c in theirs.iter("cipher") if c.get("status") in ("accepted", "preferred")}
    assert suites <= probed, f"sslscan found suites this scanner does not probe: {suites - probed}"
    assert set(ours.accepted_suites()) == suites
    groups = {g.get("name").split()[0] for g in theirs.iter("group")}
    assert set(ours.accepted_groups()) & set(CLASSICAL_GROUPS) == groups & set(CLASSICAL_GROUPS)
    assert ours.accepted_groups(), "the lab accepted no group at all"
    assert not ours.inconclusive("group"), ours.inconclusive("group")


def _target_requiring_pq(lab, tmp_path: Path) -> Path:
    text = lab.target_file.read_text()
    assert "[policy" not in text, "the lab's target already carries a policy"
    path = tmp_path / "target.toml"
    path.write_text(text + "\n[policy]\n[policy.tls]\nrequire_pq_kex = true\n")
    return path


def test_lab_fails_require_pq_kex_naming_the_missing_hybrid_groups(lab, tmp_path):
    """Neither lab server offers a hybrid group (MariaDB's OpenSSL 3.0 has no ML-KEM; MySQL picks
    its own groups), so a policy that requires post-quantum key exchange must fail here."""
    run = run_control(_target_requiring_pq(lab, tmp_path), "ZTM-TLS-1")
    message = run.assert_failed("test_only_approved_key_exchange_groups_are_accepted",
                                "post-quantum key exchange is required", *HYBRID_GROUPS)
    assert "refused" in message
    # The rest of the control is the policy's default, and passes: the failure is the PQ requirement.
    assert run.outcome("test_only_approved_suites_are_accepted").outcome == "passed"


def test_default_lab_records_every_group_with_its_verdict(lab, tmp_path):
    bundle = tmp_path / "tls1.tar.gz"
    run = run_control(lab.target_file, "ZTM-TLS-1", extra=("--evidence-out", str(bundle)))
    assert run.outcome("test_only_approved_key_exchange_groups_are_accepted").outcome == "passed"
    with tarfile.open(bundle) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.endswith("/groups.json")]
        recorded = json.loads(tar.extractfile(member).read())["data"]
    assert set(recorded["groups"]) == {*CLASSICAL_GROUPS, *HYBRID_GROUPS}
    assert all(g["verdict"] for g in recorded["groups"].values())
    for hybrid in HYBRID_GROUPS:  # neither lab server offers one: recorded as refused, with the alert
        assert recorded["groups"][hybrid]["outcome"] == "refused", recorded["groups"][hybrid]
    assert any(g["outcome"] == "accepted" for g in recorded["groups"].values())


@pytest.mark.parametrize(("groups", "verdict"), [("X25519MLKEM768:secp384r1", "passed"), ("secp384r1", "failed")])
def test_require_pq_kex_passes_against_an_endpoint_that_offers_a_hybrid(lab, tmp_path, groups, verdict):
    """The positive case, end to end through the control: the lab's target pointed at a test
    endpoint, a real OpenSSL TLS server (pyOpenSSL's wheel build, which has ML-KEM) offering
    X25519MLKEM768 behind a minimal MySQL greeting written for the test, since neither lab
    server can offer a hybrid group. The same endpoint without the hybrid fails, so the pass is
the endpoint's hybrid, not a target that was never reached."""
    from provision.pki import PkiLayout, issue_all
    from tests.unit.test_tls_scan import FakeMySQL, tls_server

    pki = PkiLayout(tmp_path / "pki")
    issue_all(pki, server_name="db.test", server_address="127.0.0.1", users={"app": "app_user"})
    endpoint = FakeMySQL(tls_server(pki, groups=groups))
    try:
        text = _target_requiring_pq(lab, tmp_path).read_text()
        lines = [f"port = {endpoint.port}" if line.startswith("port =") else
                 'host = "127.0.0.1"' if line.startswith("host =") else line for line in text.splitlines()]
        path = tmp_path / "hybrid-target.toml"
        path.write_text("\n".join(lines) + "\n")
        run = run_control(path, "ZTM-TLS-1", extra=("-k", "key_exchange_groups"))
    finally:
        endpoint.close()
    got = run.outcome("test_only_approved_key_exchange_groups_are_accepted")
    assert got.outcome == verdict, got.message + run.output[-2000:]
    if verdict == "failed":
        assert f"127.0.0.1:{endpoint.port} accepts no hybrid group: missing X25519MLKEM768 (refused" in got.message


def test_lab_under_cnsa_fails_naming_the_unapproved_groups(lab, tmp_path):
    """RFC 9151 approves secp384r1 (and ffdhe3072/4096) only; both lab servers also accept P-256
    and P-521, which ZTM-TLS-1 must name (and not name the approved P-384)."""
    text = lab.target_file.read_text()
    path = tmp_path / "cnsa-target.toml"
    path.write_text(text + '\n[policy]\nprofile = "cnsa"\n')
    run = run_control(path, "ZTM-TLS-1")
    message = run.assert_failed("test_only_approved_key_exchange_groups_are_accepted", "policy cnsa",
                                "unapproved key-exchange groups accepted", "secp256r1", "secp521r1")
    assert "secp384r1" not in message.split("; only")[0], message
