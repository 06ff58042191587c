"""`ztm tls-scan HOST:PORT`: the MySQL-protocol TLS scanner from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ztm.errors import UserError
from ztm.tls_scan import Probe, ScanResult, scan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tls-scan", help="which TLS versions and suites a MySQL server accepts, and its certificate")
    p.add_argument("address", metavar="HOST:PORT")
    p.add_argument("--ca", type=Path, help="CA file: also verify the server's chain (and --server-name)")
    p.add_argument("--server-name", help="the name the certificate must carry (SNI and SAN check)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_tls_scan)


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"expected HOST:PORT, got {text!r}", exit_code=2)
    return host.strip("[]"), int(port)


def _tls_scan(args: argparse.Namespace) -> int:
    host, port = _parse_address(args.address)
    if args.ca is not None and not args.ca.is_file():
        raise UserError(f"CA file {args.ca} does not exist", exit_code=2)
    result = scan(host, port, ca=args.ca, server_name=args.server_name)
    print(json.dumps(result.to_dict(), indent=2) if args.json else render(result))
    return 0


def _row(name: str, probe: Probe) -> str:
    state = "untestable" if probe.untestable else ("ACCEPTED" if probe.accepted else "refused")
    return f"  {name:<34} {state:<10} {probe.reason}".rstrip()


def render(result: ScanResult) -> str:
    lines = [f"{result.address}  server {result.server_version}"]
    if not result.tls_supported:
        return "\n".join([*lines, "  the server does not offer TLS at all"])
    for title, table in (("protocol versions", result.protocols), ("TLS 1.3 suites", result.tls13_suites),
                         ("TLS 1.2 suites", result.tls12_suites)):
        lines.append(title + ":")
        lines += [_row(name, probe) for name, probe in table.items()]
    if result.negotiated and result.negotiated.accepted:
        n = result.negotiated
        lines.append(f"default handshake: {n.version} {n.cipher} group {n.group}")
    for i, cert in enumerate(result.chain):
        lines.append(f"certificate {i}: {cert.subject} (issuer {cert.issuer}), {cert.key}, "
                     f"expires {cert.not_after} ({cert.days_left} days), SAN {cert.san_dns + cert.san_ip}")
    if result.verified is not None:
        lines.append("chain and name verified" if result.verified else f"NOT verified: {result.verify_error}")
    return "\n".join(lines)
