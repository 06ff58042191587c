"""`ztm anchor once | run | verify`: signed checkpoints of the audit chain, shipped off-host.

Exit codes of `ztm anchor verify`: 0 the anchors are continuous, fresh and consistent
with the database; 1 they are not (each problem printed); 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path
from typing import Any

import pymysql
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from provision.anchor_sinks import FileSink, Shipper, sink_for
from ztm import anchoring
from ztm.errors import UserError

DEFAULT_INTERVAL = 60


def register(sub: argparse._SubParsersAction) -> None:
    anchor = sub.add_parser("anchor", help="signed off-host checkpoints of the audit chain")
    a_sub = anchor.add_subparsers(dest="anchor_command", metavar="ACTION")
    a_sub.required = True
    once = a_sub.add_parser("once", help="build, sign and ship one anchor")
    run = a_sub.add_parser("run", help="anchor every interval and after every N new events")
    verify = a_sub.add_parser("verify", help="check the anchor chain, its freshness and the database")
    for p in (once, run, verify):
        p.add_argument("--target", type=Path, required=True)
    run.add_argument("--every-events", type=int, default=None, help="also anchor after this many new events")
    once.set_defaults(func=_once)
    run.set_defaults(func=_run)
    verify.set_defaults(func=_verify)


def _setup(target_file: Path) -> tuple[Any, dict[str, Any], list]:
    from ztm.target import load_target

    target = load_target(target_file)
    section = target.section("anchor")
    if not section.get("sinks"):
        raise UserError("the target has no [anchor] sinks", 2)
    return target, section, [sink_for(s, target.resolve) for s in section["sinks"]]


def _auditor(target) -> pymysql.connections.Connection:
    from ztm.db import connect

    try:
        return connect(target, target.roles["auditor"])
    except pymysql.err.OperationalError as exc:
        raise UserError(f"cannot reach {target.name} as the auditor: {exc.args[-1]}", 2) from None


def _signing_key(target, section) -> Ed25519PrivateKey:
    from evidence.sign import load_signing_key

    if not section.get("signing_key"):
        raise UserError("the target names no [anchor].signing_key (only the anchor host needs it)", 2)
    return load_signing_key(target.resolve(section["signing_key"]))


def _public_key(target, section) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(target.resolve(section["public_key"]).read_bytes())
    except (KeyError, OSError, ValueError) as exc:
        raise UserError(f"cannot read [anchor].public_key: {exc}", 2) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError("[anchor].public_key is not an Ed25519 key", 2)
    return key


def anchor_once(target, section, sinks, key, conn) -> dict[str, Any]:
    import fcntl

    buffer = target.resolve(section.get("buffer", str(sinks[0].path) + ".buffer"))
    buffer.parent.mkdir(parents=True, exist_ok=True)
    # One writer at a time: 'anchor once' next to a running 'anchor run' must not fork the chain.
    with open(buffer.with_name(buffer.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _anchor_locked(target, section, sinks, key, conn, buffer)


def _anchor_locked(target, section, sinks, key, conn, buffer: Path) -> dict[str, Any]:
    first = sinks[0]
    records = first.read() if not isinstance(first, FileSink) or first.path.exists() else []
    # The newest anchor may still wait in the primary sink's buffer: link to it, not past it.
    waiting = Shipper(sinks, buffer)._buffer(0)
    if waiting.exists() and waiting.read_text().strip():
        records += [json.loads(line) for line in waiting.read_text().splitlines() if line.strip()]
    previous = records[-1] if records else None
    record = anchoring.make_anchor(anchoring.read_state(conn), previous, key, target.name)
    if section.get("tsa_url"):  # RFC 3161: a third party's time on the checkpoint
        import base64

        from provision import tsa

        token = tsa.timestamp(anchoring.canonical(record["checkpoint"]), section["tsa_url"])
        record["tst"] = base64.b64encode(token).decode()
    Shipper(sinks, buffer).ship(record)
    return record


def _once(args: argparse.Namespace) -> int:
    target, section, sinks = _setup(args.target)
    conn = _auditor(target)
    try:
        record = anchor_once(target, section, sinks, _signing_key(target, section), conn)
    finally:
        conn.close()
    c = record["checkpoint"]
    print(f"anchor {c['anchor_seq']}: audit seq {c['seq']} head {c['head_hash'][:16]}... shipped to "
          f"{len(sinks)} sink(s); {sinks[0].note}")
    return 0


def _run(args: argparse.Namespace) -> int:
    target, section, sinks = _setup(args.target)
    key = _signing_key(target, section)
    interval = float(section.get("interval_seconds", DEFAULT_INTERVAL))
    every = args.every_events or int(section.get("every_events", 0)) or None
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    last_time, last_seq, conn = 0.0, None, None
    while not stopping:
        try:
            conn = conn if conn and conn.open else _auditor(target)
            with conn.cursor() as cur:
                cur.execute("SELECT seq FROM securedb.audit_chain_head WHERE id = 1")
                (seq,) = cur.fetchone()
            due = time.monotonic() - last_time >= interval or last_seq is None
            if every and last_seq is not None and seq - last_seq >= every:
                due = True
            if due:
                record = anchor_once(target, section, sinks, key, conn)
                last_time, last_seq = time.monotonic(), record["checkpoint"]["seq"]
        except (UserError, pymysql.MySQLError, OSError) as exc:
            print(f"ztm anchor run: {exc}", flush=True)  # keep going: the next round retries
            conn = None
        time.sleep(1.0)
    return 0


def _verify(args: argparse.Namespace) -> int:
    target, section, sinks = _setup(args.target)
    public = _public_key(target, section)
    interval = float(section.get("interval_seconds", DEFAULT_INTERVAL))
    problems: list[str] = []
    latest = None
    primary = sinks[0].read()
    for index, sink in enumerate(sinks):
        records = primary if index == 0 else sink.read()
        report = anchoring.verify_anchor_chain(records, public, allow_late_start=index > 0)
        problems += [f"{sink.path}: {p}" for p in report.problems]
        if index:
            problems += [f"{sink.path}: {p}" for p in anchoring.cross_check(primary, records)]
        latest = latest or report.latest
    stale = anchoring.check_freshness(latest, 2 * interval)
    if stale:
        problems.append(stale)
    if latest is not None:
        conn = _auditor(target)
        try:
            problems += anchoring.check_database(conn, latest)
        finally:
            conn.close()
    if args and getattr(args, "json", False):
        print(json.dumps({"problems": problems, "latest": latest}, indent=2))
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        c = latest["checkpoint"]
        print(f"anchors verified: {c['anchor_seq']} anchors, newest at {c['at']} (audit seq {c['seq']}), database "
              "consistent with it")
    return 1 if problems else 0
