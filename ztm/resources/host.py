"""The database host through testinfra: its network namespace, paths, listening sockets, the
nftables ruleset, and private keys lying in its folders.

    >>> db = in_netns(host, "ztm-db")             # every command of ``db`` runs in that namespace
    >>> listening_ports(db)
    ['tcp/3306']
    >>> path_facts(host, "/etc/mysql/my.cnf").user
    'root'
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

DENIED = re.compile(r"^find: '(.+)': Permission denied$")  # with LC_ALL=C: plain quotes, English


def in_netns(host: Any, netns: str | None) -> Any:
    """The same testinfra host with every command run inside ``netns`` (None: the host itself),
    so testinfra's own modules (socket, run, file) see that namespace."""
    if not netns:
        return host
    import testinfra.host

    backend = copy.copy(host.backend)
    inner = backend.get_command
    backend.get_command = lambda command, *args: (
        f"ip netns exec {shlex.quote(netns)} /bin/sh -c {shlex.quote(inner(command, *args))}")
    return testinfra.host.Host(backend)


@dataclass(frozen=True)
class PathFacts:
    path: str
    mode: int | None = None
    user: str | None = None
    group: str | None = None
    unavailable: str | None = None  # why mode and owners could not be read

    def seen(self) -> dict[str, str]:
        return {"mode": oct(self.mode or 0), "user": self.user or "", "group": self.group or ""}


def path_facts(host: Any, path: str) -> PathFacts:
    """Mode and owners of ``path`` (following links), or why they cannot be read."""
    f = host.file(path)
    try:
        return PathFacts(path, f.mode, f.user, f.group)
    except AssertionError:  # testinfra: stat failed
        denied = "Permission denied" in host.run("LC_ALL=C stat -L -- %s", path).stderr
        return PathFacts(path, unavailable="cannot be examined: the assessor may not reach it (permission denied)"
                         if denied else "does not exist")


SERVER_COMMANDS = ("mysqld", "mariadbd")


def server_command_lines(host: Any, config_files: list[str]) -> list[str]:
    """Command lines of the database server processes on the host (testinfra's process
    module); those naming one of ``config_files`` when any does (other servers may share the host)."""
    lines = [p.args for name in SERVER_COMMANDS for p in host.process.filter(comm=name)]
    ours = [line for line in lines if any(f in line for f in config_files)]
    return ours or lines


def listening_ports(host: Any) -> list[str]:
    """Every listening TCP/UDP port as 'tcp/3306' (testinfra's socket module; addresses dropped)."""
    return sorted({spec.split("://")[0] + "/" + spec.rsplit(":", 1)[1]
                   for spec in host.socket.get_listening_sockets() if spec.startswith(("tcp://", "udp://"))})


def nft_ruleset(host: Any) -> dict[str, Any]:
    """The live nftables ruleset as nft's JSON; AssertionError if it cannot be read."""
    return json.loads(host.check_output("nft -j list ruleset"))


def input_chains(ruleset: dict[str, Any]) -> list[dict[str, Any]]:
    """Base filter chains on the IPv4 input hook (families inet and ip)."""
    chains = [item["chain"] for item in ruleset.get("nftables", []) if "chain" in item]
    return [c for c in chains if c.get("hook") == "input" and c.get("type") == "filter"
            and c.get("family") in ("inet", "ip")]


@dataclass
class KeyScan:
    """Private keys found by content in the scanned folders, and what could not be looked at."""
    public_keys: dict[str, bytes] = field(default_factory=dict)  # path -> the key's public half (DER SPKI)
    encrypted: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # folders the assessor may not list
    missing: list[str] = field(default_factory=list)  # folders that do not exist
    unscanned: list[str] = field(default_factory=list)  # files left unread when the time budget ran out

    @property
    def private_keys_seen(self) -> list[str]:
        return sorted([*self.public_keys, *self.encrypted])


def _public_der(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


GREP_DENIED = re.compile(r"^grep: (.*): Permission denied$")


def scan_private_keys(host: Any, folders: list[str], max_kib: int, budget_s: float | None = None) -> KeyScan:
    """Read every file up to ``max_kib`` under ``folders`` (one file system) and keep each
    private key it holds, PEM or DER (a key saved in binary form is just as much a key).
    Within ``budget_s`` seconds: files left unread when it runs out are listed in ``unscanned``."""
    import time

    scan = KeyScan()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    for folder in dict.fromkeys(folders):
        listing = host.run("LC_ALL=C find %s -xdev -type f -size -%s", folder, f"{max_kib}k")
        denied = [m[1] for m in map(DENIED.match, listing.stderr.splitlines()) if m]
        scan.unlisted += denied
        if listing.rc != 0 and not denied:
            scan.missing.append(folder)
        # One pass on the host keeps only files that can hold a key: PEM armour, or DER (whose
        # first byte, 0x30, is ASCII '0' at the start of a line); the rest are never copied over.
        candidates = host.run("LC_ALL=C find %s -xdev -type f -size -%s -print0 | LC_ALL=C xargs -0 -r grep -l -a "
                              "-E -e '^0' -e 'PRIVATE KEY-----' --", folder, f"{max_kib}k")
        scan.unreadable += [m[1] for m in map(GREP_DENIED.match, candidates.stderr.splitlines()) if m]
        wanted = set(candidates.stdout.splitlines())
        for path in listing.stdout.splitlines():
            if path not in wanted:
                continue
            if deadline is not None and time.monotonic() > deadline:
                scan.unscanned.append(path)
                continue
            read = host.run("cat -- %s", path)
            if read.rc != 0:
                scan.unreadable.append(path)
                continue
            content = read.stdout_bytes
            pem = b"PRIVATE KEY-----" in content
            try:
                key = (serialization.load_pem_private_key if pem else serialization.load_der_private_key)(
                    content, password=None)
            except TypeError:  # "Password was not given but private key is encrypted"
                scan.encrypted.append(path)
                continue
            except ValueError:  # not a key (or PEM armour around one we do not know): not usable
                continue
            scan.public_keys[path] = _public_der(key)
    return scan
