"""ZTM-NET-1, ZTM-NET-2, ZTM-HST-1 and ZTM-HST-2 fail, and say why, when the host is broken
the way each exists to catch (HST-2 with a hand-made SCAP data stream run by the real oscap).
Each test restores what it broke."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
import testinfra
import tomli_w

from provision import fail2ban, netns
from provision.lab import host_controls_up
from tests.control_runner import run_control
from ztm.checks import oscap

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

OSCAP_VECTOR = Path(__file__).parent.parent / "unit" / "vectors" / "oscap-key-file-ds.xml"


def nft(*args: str) -> None:
    subprocess.run(netns.in_netns(netns.DB.netns, ["nft", *args]), check=True, capture_output=True)


def _target_with(lab, tmp_path, section: str, **facts) -> Path:
    """A copy of the lab's target with some facts of one section changed."""
    doc = tomllib.loads(lab.target_file.read_text())
    doc[section].update(facts)
    target = tmp_path / "target.toml"
    target.write_text(tomli_w.dumps(doc))
    return target


@pytest.fixture
def restore_host(lab):
    yield
    host_controls_up(lab)


def test_net1_fails_when_input_policy_is_accept(lab, restore_host, control):
    nft("chain", "inet", "ztm_filter", "input", "{ policy accept; }")
    run = control("ZTM-NET-1")
    run.assert_failed("test_input_policy_is_drop", "policy accept")
    run.assert_failed("test_database_port_reachable_only_from_the_allowlist", "not allowlisted", "reached")


def test_net1_fails_when_the_allowlist_includes_the_intruder(lab, restore_host, control):
    nft("add", "element", "inet", "ztm_filter", "db_allowlist", f"{{ {netns.INTRUDER.addresses[0]} }}")
    run = control("ZTM-NET-1")
    run.assert_failed("test_database_port_reachable_only_from_the_allowlist",
                      f"{netns.INTRUDER.addresses[0]} (not allowlisted) reached the database port")


def test_net1_fails_when_the_allowlisted_client_is_shut_out(lab, restore_host, control):
    """Without the allowlisted baseline, an intruder's refusal proves nothing: both tests say so."""
    nft("delete", "element", "inet", "ztm_filter", "db_allowlist", f"{{ {netns.ALLOWLIST} }}")
    run = control("ZTM-NET-1")
    run.assert_failed("test_allowlisted_client_reaches_the_database_port", "allowlisted assessor cannot reach",
                      "no answer within")
    run.assert_failed("test_database_port_reachable_only_from_the_allowlist", "no baseline")


@pytest.fixture
def intruder_rule(lab):
    """Reject or drop everything from the intruder's outside address, ahead of the lab firewall."""
    def apply(verdict: str) -> None:
        nft("add", "table", "inet", "ztm_sensitivity")
        nft("add", "chain", "inet", "ztm_sensitivity", "input",
            "{ type filter hook input priority -10; policy accept; }")
        nft("add", "rule", "inet", "ztm_sensitivity", "input", "ip", "saddr", netns.INTRUDER.addresses[0],
            *verdict.split())

    yield apply
    subprocess.run(netns.in_netns(netns.DB.netns, ["nft", "delete", "table", "inet", "ztm_sensitivity"]),
                   capture_output=True)


def test_net1_fails_when_the_intruder_probe_meets_host_unreachable(lab, intruder_rule, control):
    """ICMP host-unreachable is no proof of a firewall: the probe "could not run"."""
    intruder_rule("reject with icmp type host-unreachable")
    run = control("ZTM-NET-1")
    run.assert_failed("test_database_port_reachable_only_from_the_allowlist", "intruder probe could not run",
                      "host unreachable")


def test_net1_fails_when_the_intruder_cannot_reach_the_host_at_all(lab, intruder_rule, control):
    """Silence on every port (a broken path looks the same) cannot pass for a firewall drop."""
    intruder_rule("drop")
    run = control("ZTM-NET-1")
    run.assert_failed("test_database_port_reachable_only_from_the_allowlist", "could not run",
                      "does not answer", "port 22")


def test_net1_fails_when_the_intruder_namespace_is_missing(lab, tmp_path):
    target = _target_with(lab, tmp_path, "network", intruder_netns=netns.INTRUDER.netns + "-absent")
    run = run_control(target, "ZTM-NET-1")
    run.assert_failed("test_database_port_reachable_only_from_the_allowlist", "intruder probe could not run",
                      "Cannot open network namespace")


def test_net1_fails_when_an_unexpected_port_listens(control, stray_listener):
    run = control("ZTM-NET-1")
    run.assert_failed("test_only_expected_ports_listen", "unexpected listening ports", "tcp/5555")


def test_net2_fails_when_fail2ban_is_stopped(lab, restore_host, control):
    fail2ban.stop(lab.fail2ban)
    run = control("ZTM-NET-2")
    run.assert_failed("test_jail_watches_the_server_log", "fail2ban does not answer")
    run.assert_failed("test_repeated_failed_logins_get_the_source_banned", "fail2ban does not answer")


def test_net2_fails_when_fail2ban_watches_the_wrong_log(lab, restore_host, control):
    """fail2ban runs, but its jail reads another file than the one the server writes.

    Restoring re-adds the server log, and fail2ban reads on from where it stopped: the
    failed logins of this test are there, but NET-2 waited at least the jail's findtime after
    sending them, so fail2ban ignores them as too old and the next run starts unbanned."""
    wrong = lab.host_dir / "not-the-server.log"
    wrong.touch()
    fail2ban.client(lab.fail2ban, "set", fail2ban.JAIL, "addlogpath", str(wrong))
    fail2ban.client(lab.fail2ban, "set", fail2ban.JAIL, "dellogpath", str(lab.server.error_log))
    run = control("ZTM-NET-2")
    run.assert_failed("test_jail_watches_the_server_log", "blind to the server log", str(lab.server.error_log))
    run.assert_failed("test_repeated_failed_logins_get_the_source_banned", "did not get it banned",
                      "blind to the server log", "failed logins to " + str(lab.server.error_log))


def test_net2_fails_when_the_server_does_not_log_failed_logins(lab, lab_target, admin_change, control):
    variable, on, off = lab_target.dialect.failed_login_log
    with admin_change([f"SET GLOBAL {variable} = {off}"], [f"SET GLOBAL {variable} = {on}"]):
        run = control("ZTM-NET-2")
    run.assert_failed("test_jail_watches_the_server_log", "does not log failed logins", f"{variable} = {off}")
    run.assert_failed("test_repeated_failed_logins_get_the_source_banned", "did not get it banned",
                      "server log was not written")


def test_hst1_fails_when_a_key_file_is_world_readable(lab, control):
    key = lab.server.tls / "server.key"
    key.chmod(0o644)
    try:
        run = control("ZTM-HST-1")
    finally:
        key.chmod(0o600)
    run.assert_failed("test_server_keys_are_private_to_the_server_account", "server.key is mode 0o644")


def test_hst1_fails_when_the_ca_key_sits_on_the_database_host(lab, control):
    stray = lab.server.tls / "backup-ca.key"  # not the name the target forbids: found by content
    shutil.copyfile(lab.pki.ca_key, stray)
    os.chmod(stray, 0o600)
    try:
        run = control("ZTM-HST-1")
    finally:
        stray.unlink()
    run.assert_failed("test_no_ca_private_key_on_the_database_host", "backup-ca.key (the CA private key)")


def test_hst1_finds_the_ca_key_saved_in_der_form(lab, control):
    from cryptography.hazmat.primitives import serialization

    ca_key = serialization.load_pem_private_key(lab.pki.ca_key.read_bytes(), password=None)
    stray = lab.server.secure_files / "export.bin"
    stray.write_bytes(ca_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(stray, 0o600)
    try:
        run = control("ZTM-HST-1")
    finally:
        stray.unlink()
    run.assert_failed("test_no_ca_private_key_on_the_database_host", "export.bin (the CA private key)")


def test_hst1_flags_a_scan_folder_that_does_not_exist(lab, tmp_path):
    absent = str(lab.server.root / "no-such-folder")
    doc = tomllib.loads(lab.target_file.read_text())
    target = _target_with(lab, tmp_path, "host", key_scan_dirs=[*doc["host"]["key_scan_dirs"], absent])
    run = run_control(target, "ZTM-HST-1")
    run.assert_failed("test_no_ca_private_key_on_the_database_host",
                      f"scan folders that do not exist on the host: {absent}")


def test_hst1_flags_an_encrypted_private_key_it_cannot_assess(lab, control):
    """An encrypted key could be the CA's: the scan cannot tell, so it says so instead of passing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    stray = lab.server.tls / "archive.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(os.urandom(16).hex().encode()))
    stray.write_bytes(pem)
    os.chmod(stray, 0o600)
    try:
        run = control("ZTM-HST-1")
    finally:
        stray.unlink()
    run.assert_failed("test_no_ca_private_key_on_the_database_host",
                      f"cannot assess encrypted private key(s), which could be the CA's: {stray}")


def test_hst1_flags_files_the_assessor_may_not_read(lab, tmp_path):
    """An assessor without the right to read everything (here: root without the capabilities
    that bypass file permissions) gets each unreadable file and unlistable folder named.
    The lab's SSH login is root's, so the restricted reader is made with ``local://``: the
    commands then run under the restricted process itself (over SSH they would run as root)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    target = _target_with(lab, tmp_path, "host", spec="local://", netns=netns.DB.netns)
    run = run_control(target, "ZTM-HST-1",
                      wrapper=("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"))
    key = lab.server.tls / "server.key"
    run.assert_failed("test_no_ca_private_key_on_the_database_host",
                      f"cannot assess files the assessor may not read: {key}",
                      f"cannot assess folders the assessor may not list: {lab.server.secure_files}")
    assert run.outcome("test_server_keys_are_private_to_the_server_account").outcome == "passed"


def test_hst2_is_not_assessed_when_no_scap_content_matches_the_host(lab, tmp_path):
    """The assessor's machine (``local://``: Debian 12 with only Debian 12's own ssg-debian,
    which has no Debian 12 data stream) has no matching content: not assessed, saying so.
    The database host's view has the content from Debian's newer suite (the next tests)."""
    if shutil.which("oscap") is None:
        pytest.skip("openscap-scanner is not installed (tasks.py installs it)")
    host = testinfra.get_host("local://")
    release = oscap.os_release(host)
    if oscap.content_for(release, oscap.installed_contents(host)):
        pytest.skip(f"SCAP content for {release.get('PRETTY_NAME')} is installed on this machine: nothing to skip")
    target = _target_with(lab, tmp_path, "host", spec="local://", netns=netns.DB.netns)
    run = run_control(target, "ZTM-HST-2")
    got = run.outcome("test_openscap_scan_has_no_failed_rules")
    assert got.outcome == "skipped", got
    assert f"not assessed: no SCAP Security Guide content for {release['PRETTY_NAME']}" in got.message, got.message
    assert run.outcome("test_platform_security_state_is_recorded").outcome == "passed"


def test_hst2_scans_the_lab_host_over_ssh_and_keeps_the_arf(lab, tmp_path):
    """On the lab's database host (Debian 12, reached over SSH) the data stream fetched from
    Debian's newer suite is found and its ``standard`` profile evaluated: the control passes
    with every rule result and the real ARF in the bundle."""
    bundle = tmp_path / "b.tar.gz"
    run = run_control(lab.target_file, "ZTM-HST-2", extra=("--evidence-out", str(bundle)))
    run.assert_all_passed()
    assert run.outcome("test_openscap_scan_has_no_failed_rules").outcome == "passed"
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        results = json.loads(tar.extractfile(next(n for n in names if n.endswith("oscap-results.json"))).read())
        arf = tar.extractfile(next(n for n in names if n.endswith("oscap-arf.txt"))).read()
    data = results["data"]
    assert data["content"].endswith("/ssg-debian12-ds.xml") and data["profile"] == "standard", data
    assert data["counts"].get("pass", 0) > 0 and data["exit_code"] == 0, data["counts"]
    assert "xccdf_org.ssgproject.content_rule_file_permissions_etc_shadow" in data["rules"]
    # The ARF is oscap's, for this very scan: the rule results in it are the ones parsed.
    rules, _ = oscap.parse_arf(arf)
    assert rules == data["rules"]
    assert b"asset-report-collection" in arf[:2000]


TAILORED_RULE = "xccdf_org.ssgproject.content_rule_accounts_umask_etc_login_defs"
# ``standard`` deselects the groups above the rule: a tailoring selects them with it.
TAILORING = """<?xml version="1.0" encoding="UTF-8"?>
<xccdf:Tailoring xmlns:xccdf="http://checklists.nist.gov/xccdf/1.2" id="xccdf_lab.ztm_tailoring_umask">
  <xccdf:version time="2026-01-01T00:00:00">1</xccdf:version>
  <xccdf:Profile id="xccdf_lab.ztm_profile_standard_umask" extends="xccdf_org.ssgproject.content_profile_standard">
    <xccdf:title>standard, plus the login.defs umask rule</xccdf:title>
    <xccdf:select idref="xccdf_org.ssgproject.content_group_accounts" selected="true"/>
    <xccdf:select idref="xccdf_org.ssgproject.content_group_accounts-session" selected="true"/>
    <xccdf:select idref="xccdf_org.ssgproject.content_group_user_umask" selected="true"/>
    <xccdf:select idref="@RULE@" selected="true"/>
  </xccdf:Profile>
</xccdf:Tailoring>
"""


def test_hst2_fails_on_a_tailored_rule_the_host_does_not_meet_naming_it(lab, tmp_path):
    """A tailoring file adds to ``standard`` a rule the lab host does not meet (login.defs
    UMASK 022, the rule wants 027): the scan over SSH fails the control naming the rule;
    with that rule's severity left out of [host].oscap_fail_severities it passes again,
    so the failure is the rule's."""
    probe = testinfra.get_host("local://").run("grep -E '^UMASK[[:space:]]+0?27$' /etc/login.defs")
    if probe.rc == 0:
        pytest.skip("this machine's /etc/login.defs already sets UMASK 027: the tailored rule would pass")
    tailoring = tmp_path / "tailoring.xml"
    tailoring.write_text(TAILORING.replace("@RULE@", TAILORED_RULE))
    tailoring.chmod(0o644)
    tmp_path.chmod(0o755)
    target = _target_with(lab, tmp_path, "host", oscap_tailoring=str(tailoring),
                          oscap_profile="xccdf_lab.ztm_profile_standard_umask")
    failing = run_control(target, "ZTM-HST-2")
    message = failing.assert_failed("test_openscap_scan_has_no_failed_rules", "1 SCAP rule(s)", TAILORED_RULE,
                                    f"tailored by {tailoring}")
    assert "severity medium" in message, message
    target = _target_with(lab, tmp_path, "host", oscap_tailoring=str(tailoring),
                          oscap_profile="xccdf_lab.ztm_profile_standard_umask", oscap_fail_severities=["high"])
    run_control(target, "ZTM-HST-2").assert_all_passed()


def test_hst2_fails_when_a_scap_rule_fails_and_records_every_rule(lab, tmp_path):
    """A hand-made data stream whose rule checks the server key's mode: it passes on the lab
    (the rule results land in the evidence), and fails, naming the rule, once the key is 0644."""
    if shutil.which("oscap") is None:
        pytest.skip("openscap-scanner is not installed (tasks.py installs it)")
    key = lab.server.tls / "server.key"
    ds = tmp_path / "key-file-ds.xml"
    ds.write_text(OSCAP_VECTOR.read_text().replace("@KEY_FILE@", str(key)))
    target = _target_with(lab, tmp_path, "host", oscap_content=str(ds), oscap_profile="xccdf_org.ztm_profile_key_file")
    bundle = tmp_path / "b.tar.gz"
    passing = run_control(target, "ZTM-HST-2", extra=("--evidence-out", str(bundle)))
    passing.assert_all_passed()
    with tarfile.open(bundle) as tar:
        name = next(n for n in tar.getnames() if n.endswith("oscap-results.json"))
        results = json.loads(tar.extractfile(name).read())["data"]
    assert results["exit_code"] == 0 and results["counts"] == {"pass": 2}
    assert results["rules"]["xccdf_org.ztm_rule_key_file_private"]["result"] == "pass"
    key.chmod(0o644)
    try:
        failing = run_control(target, "ZTM-HST-2")
    finally:
        key.chmod(0o600)
    failing.assert_failed("test_openscap_scan_has_no_failed_rules", "1 SCAP rule(s) of severity",
                          "xccdf_org.ztm_rule_key_file_private (Key file readable by its owner only, severity high)")
