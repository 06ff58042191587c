"""ZTM-NET-1, ZTM-NET-2 and ZTM-HST-1 fail, and say why, when the host is broken the way
each exists to catch; ZTM-HST-2 parses a real OpenSCAP ARF file. Each test restores."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import tomli_w

from provision import fail2ban, netns
from provision.lab import host_controls_up

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]


def nft(*args: str) -> None:
    subprocess.run(netns.in_netns(netns.DB.netns, ["nft", *args]), check=True, capture_output=True)


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


def test_net2_fails_when_fail2ban_is_stopped(lab, restore_host, control):
    fail2ban.stop(lab.fail2ban)
    run = control("ZTM-NET-2")
    run.assert_failed("test_repeated_failed_logins_get_the_source_banned", "fail2ban does not answer")


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


def test_hst2_parses_real_arf_results(lab, tmp_path, control):
    """Debian 12 has no SSG content of its own: scan with the Debian 11 content (its rules are
    'notapplicable' here), which still exercises oscap's exit codes and the ARF parser."""
    import tomllib

    content = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml"
    if not os.path.exists(content) or shutil.which("oscap") is None:
        pytest.skip("openscap-scanner or ssg-debian is not installed")
    doc = tomllib.loads(lab.target_file.read_text())
    doc["host"]["oscap_content"] = content
    doc["host"]["oscap_rules"] = ["xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd",
                                  "xccdf_org.ssgproject.content_rule_file_owner_etc_shadow"]
    target = tmp_path / "target.toml"
    target.write_text(tomli_w.dumps(doc))
    bundle = tmp_path / "b.tar.gz"
    from tests.control_runner import run_control

    run = run_control(target, "ZTM-HST-2", extra=("--evidence-out", str(bundle)))
    run.assert_all_passed()
    import json
    import tarfile

    with tarfile.open(bundle) as tar:
        name = next(n for n in tar.getnames() if n.endswith("oscap-results.json"))
        results = json.loads(tar.extractfile(name).read())["data"]
    assert results["exit_code"] == 0 and set(results["rules"]) == set(doc["host"]["oscap_rules"])
    assert set(results["rules"].values()) == {"notapplicable"}
