"""Network probes run from another host or namespace: ``python -m ztm.netprobe ...``.

    connect HOST PORT [--source ADDR] [--timeout S]      is the port reachable from here?
    bad-logins HOST PORT N [--source ADDR]               N logins with a wrong password

Each prints one JSON line ``{"verdict": ..., "said": ...}`` and exits 0 (reachable / done),
1 (blocked) or 2 (could not run). Used by ZTM-NET-1/2 through ``ip netns exec`` (``run_from``).
Only the standard library (and pymysql for bad-logins); the wrong password is random and
never printed.

How a TCP connect is classified (a compliance probe must never mistake a broken probe for a
working firewall, so anything that does not show the *target* refusing is "could not run"):

- reachable: the handshake completed.
- blocked: the target answered with a TCP reset (nothing listens, or ``reject with tcp
  reset``); or an ICMP port-unreachable (nft's plain ``reject``; hosts never send it for
  TCP, only filters do); or an ICMP administratively-prohibited (codes 9, 10, 13: a filter
  saying "policy"); or no answer at all within the timeout (a DROP). The timeout is longer
  than Linux's neighbour resolution (3 s), so an absent host on the link is reported as host
  unreachable, not as a silent drop. The control still has to show the drop was the
  firewall's before it trusts a timeout: its drop counter for this source moved (a short
  timeout then suffices), or, on a firewall without that counter, the host answers this
  source elsewhere (ZTM-NET-1 does both).
- could not run: ICMP host- or network-unreachable (from a router, from our own stack after
  a failed ARP, or from the target itself: the message means "no path", and a firewall that
  uses it cannot be told from an absent host, so we refuse to count it as a denial), any
  other ICMP error, no route, a source address not configured here, a missing namespace or
  tool, a probe that crashed.

The ICMP type, code and sender are read from the socket's error queue (``IP_RECVERR``),
since errno alone folds admin-prohibited and host-unreachable into the same EHOSTUNREACH.
"""

from __future__ import annotations

import argparse
import errno
import json
import secrets
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass

REACHABLE, BLOCKED, COULD_NOT_RUN = "reachable", "blocked", "could not run"
EXIT_CODES = {REACHABLE: 0, BLOCKED: 1, COULD_NOT_RUN: 2}
DEFAULT_TIMEOUT = 10.0  # > 3 s neighbour resolution: see the module docstring
# The firewall's per-source counter of packets to the database port that its policy drops
# (an nftables set with counters, filled by the last rule of the input chain: provision/firewall.py).
DROP_SET = "db_port_dropped"
DROP_PROBE_TIMEOUT = 1.0  # a silent drop proven by that counter needs no long wait


def dropped_packets(ruleset: dict, source: str) -> int | None:
    """Packets from ``source`` counted by the firewall's DROP_SET (0 if it has no element for
    it yet); None when the ruleset has no such set (this firewall keeps no drop counter)."""
    found = None
    for item in ruleset.get("nftables", []):
        body = item.get("set")
        if not isinstance(body, dict) or body.get("name") != DROP_SET:
            continue
        found = found or 0
        for element in body.get("elem", []):
            value = element.get("elem", element) if isinstance(element, dict) else element
            if isinstance(value, dict) and value.get("val") == source:
                found += int((value.get("counter") or {}).get("packets", 0))
    return found

IP_RECVERR = 11  # linux/in.h; not exported by the socket module
SO_EE_ORIGIN_ICMP = 2
ICMP_DEST_UNREACH = 3
ICMP_CODES = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
              4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
              7: "destination host unknown", 9: "network administratively prohibited",
              10: "host administratively prohibited", 13: "communication administratively prohibited"}
REJECTING_CODES = {3, 9, 10, 13}


@dataclass(frozen=True)
class Verdict:
    verdict: str  # REACHABLE, BLOCKED or COULD_NOT_RUN
    said: str
    how: str = ""  # connected / tcp-reset / icmp / timeout / ...: the evidence behind the verdict

    @property
    def ok(self) -> bool:
        return self.verdict == REACHABLE


def _icmp_error(sock: socket.socket) -> tuple[int, int, str] | None:
    """(type, code, sender) of the ICMP error queued on the socket, if any."""
    sock.setblocking(False)  # with a timeout set, Python would first wait for data that never comes
    try:
        _, ancillary, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
    except OSError:
        return None
    for level, kind, data in ancillary:
        if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(data) < 24:
            continue
        _errno, origin, icmp_type, code = struct.unpack_from("=IBBB", data)
        if origin != SO_EE_ORIGIN_ICMP:
            continue
        sender = socket.inet_ntoa(data[20:24])  # SO_EE_OFFENDER: a sockaddr_in after the 16-byte header
        return icmp_type, code, sender
    return None


def connect(host: str, port: int, source: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    where = f"{host}:{port}" + (f" from {source}" if source else "")
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return Verdict(COULD_NOT_RUN, f"cannot open a socket: {exc.strerror}", "socket")
    with sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        if source:
            try:
                sock.bind((source, 0))
            except OSError as exc:
                return Verdict(COULD_NOT_RUN, f"cannot send from {source}: {exc.strerror} "
                                              "(the address is not configured where the probe runs)", "bind")
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except TimeoutError:
            return Verdict(BLOCKED, f"{where}: no answer within {timeout:.0f} s (silently dropped)", "timeout")
        except OSError as exc:
            return _classify_error(exc, _icmp_error(sock), where, host)
        return Verdict(REACHABLE, f"{where}: connected", "connected")


def _classify_error(exc: OSError, icmp: tuple[int, int, str] | None, where: str, host: str) -> Verdict:
    if icmp is not None:
        icmp_type, code, sender = icmp
        name = ICMP_CODES.get(code, f"code {code}") if icmp_type == ICMP_DEST_UNREACH else f"type {icmp_type}"
        said = f"{where}: ICMP {name} from {sender}"
        if icmp_type == ICMP_DEST_UNREACH and code in REJECTING_CODES:
            return Verdict(BLOCKED, said + " (rejected by a filter)", f"icmp-{code}")
        return Verdict(COULD_NOT_RUN, said + " (no path to the port: not proof of a firewall)", f"icmp-{code}")
    if exc.errno == errno.ECONNREFUSED:
        return Verdict(BLOCKED, f"{where}: refused with a TCP reset (nothing listens, or rejected)", "tcp-reset")
    reason = exc.strerror or str(exc)
    return Verdict(COULD_NOT_RUN, f"{where}: {reason} (the probe could not reach {host})", f"errno-{exc.errno}")


def bad_logins(host: str, port: int, count: int, source: str | None, user: str) -> Verdict:
    """``count`` logins with a random wrong password; done only if each was refused *as a login*."""
    import pymysql

    denied, other = 0, []
    for _ in range(count):
        try:
            pymysql.connect(host=host, port=port, user=user, password=secrets.token_hex(16), connect_timeout=10,
                            bind_address=source, ssl_disabled=True).close()
            other.append("a login with a random password succeeded")
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 1045:  # ER_ACCESS_DENIED_ERROR: the server judged the password
                denied += 1
            else:
                other.append(str(exc.args[-1] if exc.args else exc))
    said = f"{denied} of {count} logins refused as wrong passwords"
    if other:
        return Verdict(COULD_NOT_RUN, f"{said}; the others did not reach the password check: {other[0]}", "logins")
    return Verdict(REACHABLE, said, "logins")


def run_from(netns: str | None, *args: str, python: str = sys.executable, timeout: float = 120) -> Verdict:
    """Run a probe inside a network namespace (None: here). A probe that cannot start, that
    crashes or says something unexpected is "could not run", never a verdict about the network."""
    argv = [python, "-m", "ztm.netprobe", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    place = f"in namespace {netns}" if netns else "on the assessor"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        return Verdict(COULD_NOT_RUN, f"probe {place} could not start: {exc.filename} not found", "tooling")
    except subprocess.TimeoutExpired:
        return Verdict(COULD_NOT_RUN, f"probe {place} did not finish within {timeout:.0f} s", "tooling")
    lines = done.stdout.strip().splitlines()
    try:
        said = json.loads(lines[-1])
        verdict = Verdict(said["verdict"], said["said"], said.get("how", ""))
    except (IndexError, ValueError, KeyError, TypeError):
        output = (done.stderr or done.stdout).strip()[-300:] or f"exit code {done.returncode}, no output"
        return Verdict(COULD_NOT_RUN, f"probe {place} could not run: {output}", "tooling")
    if EXIT_CODES.get(verdict.verdict) != done.returncode:
        return Verdict(COULD_NOT_RUN, f"probe {place} exited {done.returncode} after saying {verdict.said!r}",
                       "tooling")
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztm.netprobe")
    sub = parser.add_subparsers(dest="probe", required=True)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--source")
    c.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    b = sub.add_parser("bad-logins")
    b.add_argument("host")
    b.add_argument("port", type=int)
    b.add_argument("count", type=int)
    b.add_argument("--source")
    b.add_argument("--user", default="ztm_bruteforce_probe")
    args = parser.parse_args(argv)  # bad usage exits 2: "could not run"
    if args.probe == "connect":
        verdict = connect(args.host, args.port, args.source, args.timeout)
    else:
        verdict = bad_logins(args.host, args.port, args.count, args.source, args.user)
    print(json.dumps(verdict.__dict__))
    return EXIT_CODES[verdict.verdict]


if __name__ == "__main__":
    sys.exit(main())
