"""ZTM-NET-2: brute-force throttling (fail2ban) proven by behaviour.

From the intruder's *allowlisted* address (the firewall lets it reach the port), N wrong
logins are sent, N being the jail's maxretry; within the jail's window the address must be
banned (fail2ban lists it and a TCP probe from it is refused), while another allowlisted
client keeps reaching the server. The ban is lifted afterwards.
"""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = pytest.mark.control("ZTM-NET-2")

BAN_WAIT = 15.0  # seconds: fail2ban polls the log about every second


def _f2b(socket_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["fail2ban-client", "-s", socket_path, *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def jail(target):
    host = target.section("host")
    if not host.get("fail2ban_socket"):
        pytest.skip("the target names no fail2ban socket ([host].fail2ban_socket)")
    return host["fail2ban_socket"], host.get("fail2ban_jail", "mysqld-auth")


def test_repeated_failed_logins_get_the_source_banned(target, network, jail, from_netns, evidence):
    socket_path, name = jail
    status = _f2b(socket_path, "status", name)
    assert status.returncode == 0, (f"fail2ban does not answer for jail {name}: "
                                    f"{(status.stderr or status.stdout).strip()[-200:]}")
    maxretry = int(_f2b(socket_path, "get", name, "maxretry").stdout.strip() or 5)
    findtime = int(_f2b(socket_path, "get", name, "findtime").stdout.strip() or 600)
    source = network.get("intruder_allowlisted_address")
    if not source:
        pytest.skip("the target names no allowlisted intruder address ([network].intruder_allowlisted_address): "
                    "without a client the firewall lets through, brute-force throttling cannot be exercised")
    before = from_netns(network["intruder_netns"], "connect", target.host, str(target.port), "--source", source)
    assert before.ok, f"{source} cannot reach the server before the test ({before.said}): no baseline"
    try:
        attempts = from_netns(network["intruder_netns"], "bad-logins", target.host, str(target.port),
                              str(maxretry), "--source", source)
        deadline, banned = time.monotonic() + min(BAN_WAIT, findtime), False
        while time.monotonic() < deadline and not banned:
            banned = source in _f2b(socket_path, "status", name).stdout
            time.sleep(0.5)
        after = from_netns(network["intruder_netns"], "connect", target.host, str(target.port), "--source", source)
        other = from_netns(network.get("other_client_netns"), "connect", target.host, str(target.port))
        evidence.json("ban", {"jail": name, "maxretry": maxretry, "findtime": findtime, "source": source,
                              "attempts": attempts.said, "listed_as_banned": banned, "probe_after": after.said,
                              "other_allowlisted_client": other.said})
        assert banned, (f"{maxretry} failed logins from {source} did not get it banned by jail {name} within "
                        f"{min(BAN_WAIT, findtime):.0f} s (is fail2ban running and reading the server log?)")
        assert not after.ok, f"{source} is listed as banned but still reaches the database port ({after.said})"
        assert other.ok, f"banning {source} also cut off another allowlisted client ({other.said})"
    finally:
        _f2b(socket_path, "set", name, "unbanip", source)
