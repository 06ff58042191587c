"""The host installer's outputs, checked by the real tools: the nftables ruleset by ``nft -c``
(in a throw-away network namespace), the fail2ban jails by ``fail2ban-client -t`` and its
config dump, the ufw rules against the same policy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision import fail2ban, firewall
from ztm.errors import UserError

ALLOW = ["10.1.2.0/24", "192.168.7.9"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None,
                    reason="nft -c needs root, nftables and unshare")
def test_nftables_ruleset_is_accepted_by_nft(tmp_path):
    path = tmp_path / "ruleset.nft"
    path.write_text(firewall.nftables_ruleset(ALLOW, db_port=3307, ssh_port=2222))
    done = subprocess.run(["unshare", "--net", "nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_nftables_ruleset_is_default_deny_with_the_allowlist():
    text = firewall.nftables_ruleset(ALLOW, db_port=3307, ssh_port=2222)
    assert "type filter hook input priority filter; policy drop;" in text
    assert "elements = { 10.1.2.0/24, 192.168.7.9/32 }" in text
    assert "ip saddr @db_allowlist tcp dport 3307 accept" in text
    assert "tcp dport 2222 accept" in text
    # no other 3307 rule but the per-source count of what the policy then drops (ZTM-NET-1 reads it)
    assert "tcp dport 3307" not in text.replace("ip saddr @db_allowlist tcp dport 3307", "").replace(
        "tcp dport 3307 update @db_port_dropped { ip saddr }", "")


def test_ufw_rules_express_the_same_policy():
    commands = [" ".join(c) for c in firewall.ufw_commands(ALLOW, db_port=3307, ssh_port=2222)]
    assert commands[:2] == ["ufw --force reset", "ufw default deny incoming"]
    assert "ufw allow 2222/tcp" in commands
    allowed = [c for c in commands if "port 3307" in c]
    assert allowed == ["ufw allow from 10.1.2.0/24 to any port 3307 proto tcp",
                       "ufw allow from 192.168.7.9/32 to any port 3307 proto tcp"]
    assert commands[-1] == "ufw --force enable"


def test_bad_allowlist_is_one_clear_line():
    with pytest.raises(UserError, match="bad allowlist entry"):
        firewall.nftables_ruleset(["10.0.0.0/33"])
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "provision", "firewall", "--allow", "not-a-cidr"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "bad allowlist entry" in done.stderr


@pytest.mark.skipif(shutil.which("fail2ban-client") is None or not Path("/etc/fail2ban/filter.d").is_dir(),
                    reason="fail2ban is not installed")
def test_fail2ban_jails_pass_fail2ban_own_check(tmp_path):
    layout = fail2ban.Fail2banLayout(tmp_path / "f2b")
    server_log = tmp_path / "error.log"
    server_log.touch()
    fail2ban.write_config(layout, server_log, fail2ban.JailSettings(ignoreip=("127.0.0.1/8", "10.9.9.1")))
    checked = subprocess.run(["fail2ban-client", "-c", str(layout.conf), "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    dump = subprocess.run(["fail2ban-client", "-c", str(layout.conf), "-d"], capture_output=True, text=True).stdout
    assert f"['set', '{fail2ban.JAIL}', 'addlogpath', '{server_log}', 'head']" in dump
    assert f"['set', '{fail2ban.JAIL}', 'addaction', 'nftables-allports']" in dump
    assert "['set', 'sshd', 'addaction', 'nftables-allports']" in dump
    assert f"['set', '{fail2ban.JAIL}', 'addignoreip', '127.0.0.1/8', '10.9.9.1']" in dump


def test_vm_install_refuses_a_server_log_that_does_not_exist(tmp_path):
    out = tmp_path / "jail.d" / "ztm.conf"
    with pytest.raises(UserError, match="does not exist: fail2ban would have nothing to read"):
        fail2ban.install_on_host(tmp_path / "absent.log", fail2ban.JailSettings(), tmp_path / "auth.log", out=out)
    assert not out.exists()


def test_lab_sshd_keys_are_private_and_its_config_passes_sshd_own_check(tmp_path):
    """The lab's sshd material: keys 0600, known_hosts pinned to the host key, key-only
    config checked by the real ``sshd -T`` (root by key only from the admin address)."""
    from provision import sshd

    layout = sshd.SshdLayout(tmp_path / "ssh")
    sshd.prepare(layout, "10.77.9.10", "10.77.9.1")
    for key in (layout.host_key, layout.identity, layout.authorized_keys, layout.known_hosts):
        assert key.stat().st_mode & 0o777 == 0o600, key
    host_public = (layout.host_key.parent / (layout.host_key.name + ".pub")).read_text().split()[:2]
    assert layout.known_hosts.read_text().split() == ["10.77.9.10", *host_public]
    assert layout.authorized_keys.read_text().split()[:2] == \
        (layout.identity.parent / "id_ed25519.pub").read_text().split()[:2]
    client = layout.client_config.read_text()
    assert "StrictHostKeyChecking yes" in client and f"UserKnownHostsFile {layout.known_hosts}" in client
    assert sshd.spec(layout, "10.77.9.10") == f"ssh://root@10.77.9.10?ssh_config={layout.client_config}"
    if os.geteuid() != 0 or not Path(sshd.SSHD).exists():
        pytest.skip("sshd -T needs root and openssh-server (the lab installs it)")
    base = [sshd.SSHD, "-T", "-f", str(layout.config), "-o", f"HostKey={layout.host_key}"]

    def effective(address: str) -> dict[str, str]:
        done = subprocess.run([*base, "-C", f"user=root,host=x,addr={address}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)

    admin, other = effective("10.77.9.1"), effective("10.77.9.66")
    assert admin["permitrootlogin"] == "without-password" and other["permitrootlogin"] == "no"
    for seen in (admin, other):
        assert seen["passwordauthentication"] == "no" and seen["kbdinteractiveauthentication"] == "no"
        assert seen["pubkeyauthentication"] == "yes" and seen["listenaddress"] == "10.77.9.10:22"


def test_scap_product_names_and_install_from_the_cached_package(tmp_path):
    """SSG product names from os-release; the install copies this OS's data stream only, 0644.
    Uses the content 'ztm lab up' fetched from Debian's newer suite, when this machine has it."""
    from provision import scap
    from provision.engines.base import default_cache_dir

    assert scap.product({"ID": "debian", "VERSION_ID": "12"}) == "debian12"
    assert scap.product({"ID": "ubuntu", "VERSION_ID": "22.04"}) == "ubuntu2204"
    with pytest.raises(UserError, match="no Debian package carries SCAP Security Guide content for plan94"):
        scap.fetch(tmp_path, {"ID": "plan9", "VERSION_ID": "4"})
    content = default_cache_dir() / "scap" / "ssg-debian" / "unpacked" / scap.CONTENT
    if not (content / "ssg-debian12-ds.xml").exists():
        pytest.skip("no cached ssg-debian from Debian's newer suite (the lab fetches it)")
    installed = scap.install(content, {"ID": "debian", "VERSION_ID": "12"}, into=tmp_path / "ssg")
    assert installed == tmp_path / "ssg" / "ssg-debian12-ds.xml" and installed.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "ssg").iterdir()] == ["ssg-debian12-ds.xml"]
