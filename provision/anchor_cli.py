"""`ztm anchor once | run | verify`: signed checkpoints of the audit chain, shipped off-host.

Exit codes: `ztm anchor once` 0 shipped to every sink with a timestamp, 1 shipped but a
sink failed (the anchor waits in the local buffer) or the TSA did not answer (the anchor
carries no timestamp), 2 unusable input. `ztm anchor verify` 0 the anchors are continuous,
fresh and consistent with the database (or an export); 1 they are not (each problem
printed); 2 unusable input.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.anchor_shipper import Shipper, load_records, save_records
from ztm import anchoring
from ztm.anchoring import rfc3161
from ztm.anchoring.sinks import FileSink, read_sinks
from ztm.db import connect, quote_name
from ztm.errors import UserError
from ztm.keys import load_signing_key
from ztm.target import Target, load_target

TSA_TIMEOUT = 30.0
TSA_ATTEMPTS = 3  # a token that does not verify is asked for again this many times in all


def register(sub: argparse._SubParsersAction) -> None:
    anchor = sub.add_parser("anchor", help="signed off-host checkpoints of the audit chain")
    a_sub = anchor.add_subparsers(dest="anchor_command", metavar="ACTION")
    a_sub.required = True
    once = a_sub.add_parser("once", help="build, sign and ship one anchor")
    run = a_sub.add_parser("run", help="anchor every interval and after every N new events")
    verify = a_sub.add_parser("verify", help="check the anchor chain, its freshness and the database")
    for p in (once, run, verify):
        p.add_argument("--target", type=Path, required=True)
    once.add_argument("--ddl-change", metavar="REASON",
                      help="declare a reviewed change of the audit DDL or triggers (recorded in the signed anchor)")
    run.add_argument("--every-events", type=int, default=None, help="also anchor after this many new events")
    verify.add_argument("--dump", type=Path, help="check an offline 'ztm audit export' file instead of the database")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    once.set_defaults(func=_once)
    run.set_defaults(func=_run)
    verify.set_defaults(func=_verify)


def _setup(target_file: Path) -> tuple[Target, dict[str, Any], list]:
    target = load_target(target_file)
    return (target, *anchoring.anchor_settings(target))


def _auditor(target) -> pymysql.connections.Connection:
    try:
        return connect(target, target.roles["auditor"])
    except pymysql.err.OperationalError as exc:
        raise UserError(f"cannot reach {target.name} as the auditor: {exc.args[-1]}", 2) from None


def _signing_key(target, section) -> Ed25519PrivateKey:
    if not section.get("signing_key"):
        raise UserError("the target names no [anchor].signing_key (only the anchor host needs it)", 2)
    return load_signing_key(target.resolve(section["signing_key"]), "anchor signing key")


@dataclass
class Shipment:
    record: dict[str, Any]
    failures: list[str] = field(default_factory=list)  # sinks that did not receive it (yet)
    tsa_error: str | None = None


def buffer_path(target, section, sinks) -> Path:
    first = sinks[0]
    default = str(first.path) + ".buffer" if isinstance(first, FileSink) else "anchor-state/anchors.buffer"
    return target.resolve(section.get("buffer", default))


def anchor_once(target, section, sinks, key, conn, ddl_change: str | None = None) -> Shipment:
    buffer = buffer_path(target, section, sinks)
    buffer.parent.mkdir(parents=True, exist_ok=True)
    # One writer at a time: 'anchor once' next to a running 'anchor run' must not fork the chain.
    with open(buffer.with_name(buffer.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _anchor_locked(target, section, sinks, key, conn, buffer, ddl_change)


def _previous(sinks, shipper: Shipper, last_file: Path) -> dict[str, Any] | None:
    """The newest anchor: in the primary sink, still in its buffer, or (primary unreadable)
    the copy kept locally. Linking to anything older would fork the chain."""
    first, candidates = sinks[0], []
    try:
        records = first.read() if not isinstance(first, FileSink) or first.path.exists() else []
        candidates += records[-1:]
    except Exception as exc:  # an unreadable primary must not stop anchoring
        if not last_file.exists():
            raise UserError(f"cannot read the primary anchor sink {first.path} and no local copy of the newest "
                            f"anchor exists: {exc}") from None
    candidates += load_records(shipper._buffer(0))[-1:] + load_records(last_file)
    return max(candidates, key=lambda r: r["checkpoint"]["anchor_seq"], default=None)


def _anchor_locked(target, section, sinks, key, conn, buffer: Path, ddl_change: str | None) -> Shipment:
    shipper = Shipper(sinks, buffer)
    last_file = buffer.with_name(buffer.name + ".last")
    previous = _previous(sinks, shipper, last_file)
    state = anchoring.read_state(conn, target.database)
    if ddl_change is not None:
        ddl_change = " ".join(ddl_change.split())
        if not ddl_change or len(ddl_change) > 500:
            raise UserError("--ddl-change needs a reason of 1 to 500 characters (what changed, who reviewed it)", 2)
        if previous and previous["checkpoint"]["ddl_digest"] == state["ddl_digest"]:
            raise UserError(f"the audit DDL and triggers are unchanged since anchor "
                            f"{previous['checkpoint']['anchor_seq']}: there is no change to declare", 2)
    record = anchoring.make_anchor(state, previous, key, target.name, ddl_change)
    shipment = Shipment(record)
    if section.get("tsa_url"):  # RFC 3161: a third party's time on the checkpoint
        tsa_ca = target.resolve(section["tsa_ca"]) if section.get("tsa_ca") else None
        try:
            record["tst"] = base64.b64encode(_verified_token(record, section["tsa_url"], tsa_ca)).decode()
        except UserError as exc:  # the anchor still goes out, flagged: its time is then bounded by the next one
            shipment.tsa_error = str(exc)
            record["tst_missing"] = str(exc)
    save_records(last_file, [record])  # atomic and durable: the next anchor links to it whatever happens next
    shipper.ship(record)
    shipment.failures = shipper.failures
    return shipment


def _verified_token(record: dict[str, Any], url: str, tsa_ca: Path | None) -> bytes:
    """A token over the checkpoint, verified on arrival (signature, CA, data, genTime close to
    the anchor's time): a bad one is asked for again, never stored."""
    data, error = anchoring.canonical(record["checkpoint"]), ""
    for attempt in range(TSA_ATTEMPTS):
        if attempt:
            time.sleep(attempt)
        token = rfc3161.timestamp(data, url, TSA_TIMEOUT)  # not answering: UserError, no retry
        if tsa_ca is None:
            return token
        try:
            anchoring.check_token(record, token, tsa_ca)
            return token
        except UserError as exc:
            error = str(exc)
    raise UserError(f"the time-stamping authority {url} answered {TSA_ATTEMPTS} times with a token that does not "
                    f"verify: {error}")


def declare_schema_change(target_file: Path, reason: str) -> dict[str, Any] | None:
    """For an installer that has just applied the schema: when the audit DDL or triggers
    differ from the newest anchor's, anchor now with the change declared (so that it is not
    reported as tampering). None when nothing changed or no anchor exists yet."""
    target, section, sinks = _setup(target_file)
    conn = _auditor(target)
    try:
        buffer = buffer_path(target, section, sinks)
        previous = _previous(sinks, Shipper(sinks, buffer), buffer.with_name(buffer.name + ".last"))
        if previous is None or previous["checkpoint"]["ddl_digest"] == anchoring.ddl_digest(conn, target.database):
            return None
        return anchor_once(target, section, sinks, _signing_key(target, section), conn, reason).record
    finally:
        conn.close()


def writable_dirs(target_file: Path) -> list[Path]:
    """What the anchor writes (for systemd's ReadWritePaths): the target's folder, the file
    sinks' folders and the local buffer's."""
    target, section, sinks = _setup(target_file)
    dirs = {target_file.resolve().parent, buffer_path(target, section, sinks).parent}
    dirs |= {s.path.parent for s in sinks if isinstance(s, FileSink)}
    return sorted(dirs)


def file_sink_paths(target_file: Path) -> list[Path]:
    """The file sinks' paths: made append-only (chattr +a) by the unit's privileged start step."""
    _, _, sinks = _setup(target_file)
    return sorted(s.path for s in sinks if isinstance(s, FileSink))


def _once(args: argparse.Namespace) -> int:
    target, section, sinks = _setup(args.target)
    conn = _auditor(target)
    try:
        shipment = anchor_once(target, section, sinks, _signing_key(target, section), conn, args.ddl_change)
    finally:
        conn.close()
    c = shipment.record["checkpoint"]
    delivered = len(sinks) - len(shipment.failures)
    print(f"anchor {c['anchor_seq']}: {c['events']} audit events in {len(c['lanes'])} lanes, heads digest "
          f"{c['heads_digest'][:16]}... shipped to "
          f"{delivered} of {len(sinks)} sink(s); {sinks[0].note}" + (f"; declared DDL change: {c['ddl_change']}"
                                                                    if c.get("ddl_change") else ""))
    for failure in shipment.failures:
        print(f"FAILED: sink {failure}")
    if shipment.tsa_error:
        print(f"FAILED: anchor {c['anchor_seq']} carries no RFC 3161 timestamp: {shipment.tsa_error}")
    return 1 if shipment.failures or shipment.tsa_error else 0


def _run(args: argparse.Namespace) -> int:
    target, section, sinks = _setup(args.target)
    key = _signing_key(target, section)
    interval = anchoring.interval(section)
    every = args.every_events or int(section.get("every_events", 0)) or None
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    last_time, last_seq, conn, errors, logged = 0.0, None, None, 0, ""
    shipper = Shipper(sinks, buffer_path(target, section, sinks))
    while not stopping.is_set():
        try:
            conn = conn if conn and conn.open else _auditor(target)
            with conn.cursor() as cur:
                cur.execute(f"SELECT SUM(seq) FROM {quote_name(target.database)}.audit_chain_head")
                seq = int(cur.fetchone()[0] or 0)
            due = last_seq is None or time.monotonic() - last_time >= interval
            if every and last_seq is not None and seq - last_seq >= every:
                due = True
            if due:
                shipment = anchor_once(target, section, sinks, key, conn)
                last_time, last_seq = time.monotonic(), shipment.record["checkpoint"]["events"]
                failures = shipment.failures + ([f"TSA: {shipment.tsa_error}"] if shipment.tsa_error else [])
            elif shipper.pending():  # retry buffered anchors as soon as their backoff allows
                shipper.ship(None)
                failures = shipper.failures
            else:
                failures = []
            line = "; ".join(failures)
            if line != logged:
                print(f"ztm anchor run: {'FAILED: ' + line if line else 'every sink up to date'}", flush=True)
                logged = line
            errors = 0
        except Exception as exc:  # one bad round must not stop the anchor
            errors += 1
            print(f"ztm anchor run: round failed ({type(exc).__name__}): {' '.join(str(exc).split())[:300]}",
                  flush=True)
            if conn is not None:
                with contextlib.suppress(Exception):  # already broken
                    conn.close()
            conn = None
        stopping.wait(1.0 if not errors else min(2.0 ** errors, interval))
    return 0


def _verify(args: argparse.Namespace) -> int:
    target, section, sinks = _setup(args.target)
    public = anchoring.public_key(target, section)
    interval = anchoring.interval(section)
    named, problems = read_sinks(sinks)
    report = anchoring.verify_sinks(named, public, grace_seconds=interval, target_name=target.name)
    problems += report.problems
    notes = list(report.notes)
    stale = anchoring.check_freshness(report.latest, 2 * interval)
    if stale:
        problems.append(stale)
    if report.reference and section.get("tsa_url") and section.get("tsa_ca"):
        tsa_problems, tsa_notes = anchoring.check_timestamps(report.reference, target.resolve(section["tsa_ca"]))
        problems, notes = problems + tsa_problems, notes + tsa_notes
    if args.dump is not None:
        dump_problems, dump_notes = anchoring.check_export(args.dump, report.reference)
        problems, notes = problems + dump_problems, notes + dump_notes
    elif report.reference:
        conn = _auditor(target)
        try:
            problems += anchoring.check_database(conn, report.reference, target.database)
        except pymysql.MySQLError as exc:
            raise UserError(f"cannot read the audit chain: {exc.args[-1]}", 2) from None
        finally:
            conn.close()
    if args.json:
        print(json.dumps({"problems": problems, "notes": notes, "sinks": report.per_sink,
                          "latest": report.latest}, indent=2))
        return 1 if problems else 0
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        c = report.latest["checkpoint"]
        against = f"the export {args.dump}" if args.dump else "the database"
        print(f"anchors verified: {c['anchor_seq']} anchors in {len(sinks)} sink(s), newest at {c['at']} "
              f"({c['events']} audit events), {against} consistent with them")
    return 1 if problems else 0
