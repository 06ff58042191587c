"""`ztm audit verify` and `ztm audit export`: the audit trail's lanes, online or from a dump.

Exit codes of `ztm audit verify`: 0 every lane is intact; 1 one is broken (each broken lane,
its first broken seq and the reason are printed); 2 the input is unusable (bad target,
unreachable server, unreadable or single-chain dump, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pymysql

from ztm.audit_chain import (
    DRIVER_ERRORS,
    EXIT_BROKEN,
    EXIT_INTACT,
    EXIT_UNUSABLE,
    GENESIS,
    LANES,
    export_rows,
    open_reader,
    verify_dump,
    verify_target,
)
from ztm.db import connect
from ztm.errors import UserError
from ztm.target import Target, load_target

HASH = re.compile(r"^[0-9a-f]{64}$")
EXIT_CODES = (f"exit codes: {EXIT_INTACT} intact; {EXIT_BROKEN} broken (per broken lane, first broken seq and why: "
              f"hash mismatch, link mismatch, gap, head mismatch); {EXIT_UNUSABLE} unusable input (target, server, "
              "dump, arguments)")


def register(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="the hash-chained audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_sub.required = True
    v = audit_sub.add_parser("verify", help="recompute every hash of the chain (streamed, constant memory)",
                             epilog=EXIT_CODES)
    source = v.add_mutually_exclusive_group(required=True)
    source.add_argument("--target", type=Path, help="target file: read the chain from the server")
    source.add_argument("--dump", type=Path, help="a JSON-lines dump from 'ztm audit export': verify offline")
    v.add_argument("--role", default="auditor", help="target role to read as (default: auditor)")
    v.add_argument("--from-lane", type=int, default=0, help="the lane of --from-seq (default 0)")
    v.add_argument("--from-seq", type=int, default=0,
                   help="trusted starting point: verify only that lane's rows after it (other lanes from genesis)")
    v.add_argument("--from-hash", default=GENESIS, help="curr_hash of --from-seq (e.g. from a signed anchor)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=_verify)
    e = audit_sub.add_parser("export", help="write the chain as JSON lines for offline verification")
    e.add_argument("--target", type=Path, required=True)
    e.add_argument("--role", default="auditor")
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(func=_export)


def _target(target_file: Path, role: str) -> Target:
    target = load_target(target_file)
    if role not in target.roles:
        raise UserError(f"the target has no role {role!r}", EXIT_UNUSABLE)
    return target


def _connect(target_file: Path, role: str) -> tuple[pymysql.connections.Connection, str]:
    """A connection as ``role`` and the target's database."""
    target = _target(target_file, role)
    try:
        return connect(target, target.roles[role]), target.database
    except pymysql.err.OperationalError as exc:
        raise UserError(f"cannot connect to {target.name} as {role}: {exc.args[-1]}", EXIT_UNUSABLE) from None


def _verify(args: argparse.Namespace) -> int:
    if args.from_seq < 0 or not HASH.match(args.from_hash):
        raise UserError("--from-seq must be >= 0 and --from-hash 64 lower-case hex digits", EXIT_UNUSABLE)
    if args.from_seq == 0 and args.from_hash != GENESIS:
        raise UserError("--from-hash needs --from-seq (the seq whose curr_hash it is)", EXIT_UNUSABLE)
    if not 0 <= args.from_lane < LANES:
        raise UserError(f"--from-lane must be one of the trail's lanes, 0..{LANES - 1}", EXIT_UNUSABLE)
    start = {args.from_lane: (args.from_seq, args.from_hash)}
    if args.dump is not None:
        report = verify_dump(args.dump, start=start)
    else:
        target = _target(args.target, args.role)
        try:
            conn = open_reader(target, args.role)
        except DRIVER_ERRORS as exc:
            raise UserError(f"cannot connect to {target.name} as {args.role}: {exc.args[-1]}", EXIT_UNUSABLE) from None
        try:
            report, _ = verify_target(target, args.role, start=start, conn=conn)
        except DRIVER_ERRORS as exc:
            raise UserError(f"cannot read the audit chain of {target.name}: {exc.args[-1]}", EXIT_UNUSABLE) from None
        except RuntimeError as exc:  # a segment worker could not run
            raise UserError(str(exc), EXIT_UNUSABLE) from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.describe())
    return EXIT_INTACT if report.intact else EXIT_BROKEN


def _export(args: argparse.Namespace) -> int:
    conn, database = _connect(args.target, args.role)
    try:
        count = export_rows(conn, args.out, database)
    except pymysql.MySQLError as exc:
        raise UserError(f"cannot read the audit chain: {exc.args[-1]}", EXIT_UNUSABLE) from None
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror}", EXIT_UNUSABLE) from None
    finally:
        conn.close()
    print(f"exported {count} audit events to {args.out}")
    return 0
