"""The lab network: namespaces on one private /24, reachable only from this machine.

Nothing here routes anywhere else: namespaces get no default route, and the root
namespace only gains the connected route of the lab bridge.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Network

from ztm.errors import UserError

# $ZTM_LAB_INSTANCE (0-9, default 0) lets several labs run side by side (e.g. one per
# engine, or one per developer): instance N uses 10.77.N.0/24 and names prefixed "ztmN-".
INSTANCE = int(os.environ.get("ZTM_LAB_INSTANCE", "0"))
if not 0 <= INSTANCE <= 9:
    raise ValueError("ZTM_LAB_INSTANCE must be 0-9")
_PREFIX = "ztm" if INSTANCE == 0 else f"ztm{INSTANCE}"
SUBNET = IPv4Network(f"10.77.{INSTANCE}.0/24")
_NET = f"10.77.{INSTANCE}"
BRIDGE = f"{_PREFIX}-br0"
ASSESSOR_ADDRESS = f"{_NET}.1"  # the pytest process, in the root namespace
ALLOWLIST = f"{_NET}.0/27"  # clients allowed to reach 3306
ACCOUNT_HOST = f"{_NET}.%"  # database account host pattern: the lab subnet


@dataclass(frozen=True)
class LabHost:
    netns: str
    veth: str  # host-side end, attached to the bridge
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]


DB = LabHost(f"{_PREFIX}-db", f"{_PREFIX}-db-h", (f"{_NET}.10",))
LOG = LabHost(f"{_PREFIX}-log", f"{_PREFIX}-log-h", (f"{_NET}.20",))
# The intruder has one address outside the allowlist and one inside it (a compromised
# allowlisted client), so both the firewall and brute-force throttling can be exercised.
INTRUDER = LabHost(f"{_PREFIX}-intruder", f"{_PREFIX}-int-h", (f"{_NET}.66", f"{_NET}.30"))
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


def _no_ipv6(interface: str, netns: str | None = None) -> None:
    """The lab is IPv4 only: no link-local chatter, no neighbour discovery."""
    argv = ["sysctl", "-q", "-w", f"net.ipv6.conf.{interface}.disable_ipv6=1"]
    subprocess.run(in_netns(netns, argv) if netns else argv, capture_output=True)


def up() -> None:
    """Create bridge, namespaces and links; safe to run again."""
    prefix = SUBNET.prefixlen
    if not link_exists(BRIDGE):
        _ip("link", "add", BRIDGE, "type", "bridge")
    if f"{ASSESSOR_ADDRESS}/{prefix}" not in _ip("-4", "addr", "show", "dev", BRIDGE).stdout:
        _ip("addr", "add", f"{ASSESSOR_ADDRESS}/{prefix}", "dev", BRIDGE)
    _no_ipv6(BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for host in HOSTS:
        if not netns_exists(host.netns):
            _ip("netns", "add", host.netns)
        if not link_exists(host.veth):
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _no_ipv6(host.veth)
        _no_ipv6("all", netns=host.netns)
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
        # Deleting the namespace takes the veth pair with it, asynchronously: only what is left.
        if link_exists(host.veth) and _ip("link", "delete", host.veth, check=False).returncode != 0 \
                and link_exists(host.veth):
            raise UserError(f"cannot delete link {host.veth}")
    if link_exists(BRIDGE):
        _ip("link", "delete", BRIDGE)


def status() -> dict[str, bool]:
    state = {f"netns {h.netns}": netns_exists(h.netns) for h in HOSTS}
    state[f"bridge {BRIDGE}"] = link_exists(BRIDGE)
    return state
