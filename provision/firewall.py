"""Host firewall of the database host: default deny in, 3306 from allowlisted CIDRs, 22 for SSH.

nftables is the native form (the lab applies it inside the database namespace); on a VM
that uses ufw, ``ufw_commands`` gives the equivalent rules.
"""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Network
from pathlib import Path

from ztm.errors import UserError
from ztm.netprobe import DROP_SET

TABLE = "ztm_filter"


def _cidrs(allowlist: list[str]) -> list[str]:
    try:
        return [str(IPv4Network(c, strict=False)) for c in allowlist]
    except ValueError as exc:
        raise UserError(f"bad allowlist entry: {exc}") from None


def nftables_ruleset(allowlist: list[str], db_port: int = 3306, ssh_port: int = 22) -> str:
    """The whole table, replaced atomically (``nft -f`` runs it as one transaction)."""
    elements = ", ".join(_cidrs(allowlist))
    return f"""# Written by ztm provision: default deny in; the database port only from the allowlist.
table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
  set db_allowlist {{
    type ipv4_addr
    flags interval
    elements = {{ {elements} }}
  }}
  # Per source address, the packets to the database port that reached the end of the input
  # chain, i.e. that the policy drops: ZTM-NET-1 proves a silent drop from it in a second.
  set {DROP_SET} {{
    type ipv4_addr
    size 65536
    flags dynamic
    counter
  }}
  chain input {{
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    ct state invalid drop
    ip protocol icmp icmp type {{ echo-request, destination-unreachable, time-exceeded }} accept
    tcp dport {ssh_port} accept comment "ssh"
    ip saddr @db_allowlist tcp dport {db_port} accept comment "database, allowlisted clients"
    tcp dport {db_port} update @{DROP_SET} {{ ip saddr }} comment "database port, dropped by policy"
    counter comment "dropped by policy"
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
  }}
}}
"""


def ufw_commands(allowlist: list[str], db_port: int = 3306, ssh_port: int = 22) -> list[list[str]]:
    """The same policy for a VM managed with ufw (``ztm provision --firewall ufw``)."""
    commands = [["ufw", "--force", "reset"], ["ufw", "default", "deny", "incoming"],
                ["ufw", "default", "allow", "outgoing"], ["ufw", "allow", f"{ssh_port}/tcp"]]
    commands += [["ufw", "allow", "from", c, "to", "any", "port", str(db_port), "proto", "tcp"]
                 for c in _cidrs(allowlist)]
    return [*commands, ["ufw", "--force", "enable"]]


def apply_nftables(ruleset: str, path: Path, netns_argv: list[str]) -> None:
    path.write_text(ruleset)
    done = subprocess.run([*netns_argv, "nft", "-f", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"loading the firewall ruleset failed: {done.stderr.strip()[-300:]}")


def apply_ufw(commands: list[list[str]]) -> None:
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"'{' '.join(command)}' failed: {(done.stderr or done.stdout).strip()[-300:]}")
