"""`ztm tls-scan HOST:PORT`: the MySQL-protocol TLS scanner from the command line.

Exit codes: 0 the scan completed (whatever it found), 2 bad input or an unreachable server.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path

from cryptography import x509

from ztm.errors import UserError
from ztm.target import check_host_name
from ztm.tls_scan import SCAN_DEADLINE, Probe, ScanResult, scan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tls-scan", help="which TLS versions, suites and key-exchange groups a MySQL server accepts, "
                       "and its certificate")
    p.add_argument("address", metavar="HOST:PORT", help="e.g. 10.77.0.10:3306 or [2001:db8::1]:3306")
    p.add_argument("--ca", type=Path, help="CA file: also verify the server's chain (and --server-name)")
    p.add_argument("--server-name", help="the name the certificate must carry (SNI and SAN check)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    p.add_argument("--deadline", type=float, default=SCAN_DEADLINE,
                   help="seconds for the whole scan (default 300); probes left are inconclusive")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_tls_scan)


def parse_address(text: str) -> tuple[str, int]:
    """'host:port', 'a.b.c.d:port' or '[v6]:port'."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UserError(f"not an IPv6 address in brackets: {text!r}", exit_code=2) from None
    elif ":" in host:
        raise UserError(f"an IPv6 address needs brackets: [ADDRESS]:PORT, got {text!r}", exit_code=2)
    # isdigit() alone also takes '²' and other digits int() refuses.
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise UserError(f"expected HOST:PORT with a port 1-65535, got {text!r}", exit_code=2)
    check_host_name(host)  # UserError, exit code 2
    return host, int(port)



def _check_ca(path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read CA file {path}: {exc.strerror}", exit_code=2) from None
    try:
        if not x509.load_pem_x509_certificates(data):
            raise ValueError
    except ValueError:
        raise UserError(f"CA file {path} holds no PEM certificate", exit_code=2) from None


def _tls_scan(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address)
    if args.ca is not None:
        _check_ca(args.ca)
    if args.server_name is not None and args.ca is None:
        raise UserError("--server-name is checked against the certificate only with --ca", exit_code=2)
    if not 0 < args.timeout <= 600:
        raise UserError(f"--timeout must be between 0 and 600 seconds, got {args.timeout:g}", exit_code=2)
    if not 0 < args.deadline <= 3600:
        raise UserError(f"--deadline must be between 0 and 3600 seconds, got {args.deadline:g}", exit_code=2)
    progress = _progress if sys.stderr.isatty() else None
    try:
        result = scan(host, port, ca=args.ca, server_name=args.server_name, timeout=args.timeout,
                      deadline=args.deadline, progress=progress)
    finally:
        if progress is not None:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(json.dumps(result.to_dict(), indent=2) if args.json else render(result))
    return 0


def _progress(done: int, total: int, name: str) -> None:
    """One self-overwriting line on the terminal (stderr), so a slow server shows it is slow."""
    print(f"\r\033[K  probe {done + 1}/{total}: {name}", end="", file=sys.stderr, flush=True)


def _row(name: str, probe: Probe) -> str:
    state = {"accepted": "ACCEPTED", "refused": "refused", "inconclusive": "INCONCLUSIVE"}[probe.outcome]
    return f"  {name:<34} {state:<12} {probe.reason}".rstrip()


def render(result: ScanResult) -> str:
    lines = [f"{result.address}  server {result.server_version}  (client: {result.client})"]
    if not result.tls_supported:
        return "\n".join([*lines, "  the server does not offer TLS at all"])
    for title, table in (("protocol versions", result.protocols), ("TLS 1.3 suites", result.tls13_suites),
                         ("TLS 1.2 suites", result.tls12_suites), ("key-exchange groups", result.groups)):
        lines.append(title + ":")
        lines += [_row(name, probe) for name, probe in table.items()]
    if result.negotiated and result.negotiated.accepted:
        n = result.negotiated
        lines.append(f"default handshake: {n.version} {n.cipher} group {n.group}")
    elif result.negotiated:
        lines.append(f"default handshake failed: {result.negotiated.reason}")
    for i, cert in enumerate(result.chain):
        lines.append(f"certificate {i}: {cert.subject} (issuer {cert.issuer}), {cert.key}, "
                     f"expires {cert.not_after} ({cert.days_left} days), SAN {cert.san_dns + cert.san_ip}")
    if result.verified is not None:
        lines.append("chain and name verified" if result.verified else f"NOT verified: {result.verify_error}")
    inconclusive = result.inconclusive()
    if inconclusive:
        lines.append(f"{len(inconclusive)} probe(s) inconclusive: neither accepted nor refused")
    return "\n".join(lines)
