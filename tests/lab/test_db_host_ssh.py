"""The lab's database host is reached over SSH, like a VM, and host evidence comes from it.

The database namespace shares this machine's file system, so reading a file over SSH and
here would look alike: the proof uses what only the database host has. Its sshd runs in the
database namespace (its addresses are not the assessor's) and in its own mount view (a
tmpfs with a marker exists there only; /etc/ssh there is the lab's sshd folder).
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest
import testinfra
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision import lab as lab_mod
from provision import netns, sshd
from provision.files import write_private
from tests.control_runner import run_control
from ztm.checks.host_spec import HostUnreachable, open_host

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def spec(lab) -> str:
    return tomllib.loads(lab.target_file.read_text())["host"]["spec"]


def test_the_lab_target_reaches_the_host_over_ssh_with_a_pinned_host_key(lab, spec):
    assert spec == f"ssh://root@{netns.DB.address}?ssh_config={lab.sshd.client_config}"
    doc = tomllib.loads(lab.target_file.read_text())
    assert "netns" not in doc["host"]  # commands run in the database namespace because sshd does
    config = lab.sshd.client_config.read_text()
    assert "StrictHostKeyChecking yes" in config and "BatchMode yes" in config
    for key in (lab.sshd.identity, lab.sshd.host_key):
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_host_evidence_comes_from_the_database_host_not_the_assessor(lab, spec):
    db_host = open_host(spec)
    remote = db_host.run("ip -o -4 addr show")
    local = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    assert remote.rc == 0 and f"inet {netns.DB.address}/" in remote.stdout, remote.stdout
    assert f"inet {netns.ASSESSOR_ADDRESS}/" not in remote.stdout, remote.stdout
    assert f"inet {netns.ASSESSOR_ADDRESS}/" in local and f"inet {netns.DB.address}/" not in local
    marker = lab.sshd.view / "marker"
    expected = lab.sshd.marker_expected.read_text().strip()
    assert not marker.exists(), "the marker must exist in the database host's view only"
    seen = db_host.file(str(marker))
    assert seen.exists and seen.content_string.strip() == expected
    # /etc/ssh on the database host is the lab's sshd folder: the config a scan reads is the one serving.
    assert db_host.file("/etc/ssh/sshd_config").content_string == lab.sshd.config.read_text()


def test_sshd_takes_only_the_lab_key_and_only_its_own_host_key(lab, spec, tmp_path):
    stranger = tmp_path / "id_ed25519"
    write_private(stranger, Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()), mode=0o600)
    config = tmp_path / "ssh_config"
    config.write_text(lab.sshd.client_config.read_text().replace(str(lab.sshd.identity), str(stranger))
                      .replace(f"{lab.sshd.client}/cm-%C", f"{tmp_path}/cm-%C"))
    with pytest.raises(HostUnreachable, match=rf"could not reach the database host at ssh://root@{netns.DB.address}"
                                              r": .*Permission denied \(publickey\)"):
        open_host(f"ssh://root@{netns.DB.address}?ssh_config={config}&controlpersist=0")
    pinned = tmp_path / "known_hosts"
    other = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                   serialization.PublicFormat.OpenSSH)
    pinned.write_text(f"{netns.DB.address} {other.decode()}\n")
    config.write_text(lab.sshd.client_config.read_text().replace(str(lab.sshd.known_hosts), str(pinned))
                      .replace(f"{lab.sshd.client}/cm-%C", f"{tmp_path}/cm-%C"))
    with pytest.raises(HostUnreachable, match="Host key verification failed"):
        open_host(f"ssh://root@{netns.DB.address}?ssh_config={config}&controlpersist=0")


def test_sshd_is_the_labs_process_not_the_system_service_and_up_is_idempotent(lab):
    before = sshd.pid(lab.sshd)
    assert before is not None
    lab_mod.sshd_up(lab, None)
    assert sshd.pid(lab.sshd) == before
    if shutil.which("systemctl"):
        enabled = subprocess.run(["systemctl", "is-enabled", "ssh.service"], capture_output=True, text=True)
        assert enabled.stdout.strip() != "enabled", "the lab must not enable the system sshd"


def test_local_spec_stays_available(lab, tmp_path):
    """``local://`` (with the database namespace for network commands) still assesses the host."""
    doc = tomllib.loads(lab.target_file.read_text())
    doc["host"].update({"spec": "local://", "netns": netns.DB.netns})
    import tomli_w

    target = tmp_path / "target.toml"
    target.write_text(tomli_w.dumps(doc))
    run = run_control(target, "ZTM-HST-1")
    run.assert_all_passed()
    assert not [n for n in run.tests if "[" in n]
    assert testinfra.get_host("local://").run("true").rc == 0
