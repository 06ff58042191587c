"""The lab network: namespaces on one private /24, reachable only from this machine.

Nothing here routes anywhere else: namespaces get no default route, and the root
namespace only gains the connected route of the lab bridge.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Network

from ztm.errors import UserError

SUBNET = IPv4Network("10.77.0.0/24")
BRIDGE = "ztm-br0"
ASSESSOR_ADDRESS = "10.77.0.1"  # the pytest process, in the root namespace
ALLOWLIST = "10.77.0.0/27"  # clients allowed to reach 3306


@dataclass(frozen=True)
class LabHost:
    netns: str
    veth: str  # host-side end, attached to the bridge
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]


DB = LabHost("ztm-db", "ztm-db-h", ("10.77.0.10",))
LOG = LabHost("ztm-log", "ztm-log-h", ("10.77.0.20",))
# The intruder has one address outside the allowlist and one inside it (a compromised
# allowlisted client), so both the firewall and brute-force throttling can be exercised.
INTRUDER = LabHost("ztm-intruder", "ztm-int-h", ("10.77.0.66", "10.77.0.30"))
HOSTS = (DB, LOG, INTRUDER)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise UserError(f"'ip {' '.join(args)}' failed: {done.stderr.strip()}")
    return done


def netns_exists(name: str) -> bool:
    return name in (line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip())


def link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def up() -> None:
    """Create bridge, namespaces and links; safe to run again."""
    prefix = SUBNET.prefixlen
    if not link_exists(BRIDGE):
        _ip("link", "add", BRIDGE, "type", "bridge")
    if f"{ASSESSOR_ADDRESS}/{prefix}" not in _ip("-4", "addr", "show", "dev", BRIDGE).stdout:
        _ip("addr", "add", f"{ASSESSOR_ADDRESS}/{prefix}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for host in HOSTS:
        if not netns_exists(host.netns):
            _ip("netns", "add", host.netns)
        if not link_exists(host.veth):
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _ip("link", "set", host.veth, "master", BRIDGE, "up")
        ns = ("-n", host.netns)
        _ip(*ns, "link", "set", "lo", "up")
        have = _ip(*ns, "-4", "addr", "show", "dev", "eth0").stdout
        for address in host.addresses:
            if f"{address}/" not in have:
                _ip(*ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
        _ip(*ns, "link", "set", "eth0", "up")


def down() -> None:
    for host in HOSTS:
        if netns_exists(host.netns):
            _ip("netns", "delete", host.netns)
        if link_exists(host.veth):
            _ip("link", "delete", host.veth)
    if link_exists(BRIDGE):
        _ip("link", "delete", BRIDGE)


def status() -> dict[str, bool]:
    state = {f"netns {h.netns}": netns_exists(h.netns) for h in HOSTS}
    state[f"bridge {BRIDGE}"] = link_exists(BRIDGE)
    return state
