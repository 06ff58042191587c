"""Signed checkpoints of the audit chain ("anchors"), and their verification.

An anchor records, as read by the auditor: the head seq and hash, the row count, a digest
per object of every definition that decides what is recorded and enforced (all triggers,
routines and views, the tables' columns, keys and constraints) and one over them all, the
time, its own sequence number and the hash of the previous anchor; it is signed with
Ed25519. A reviewed change of any of those definitions is declared in the anchor taken
after it (``ddl_change``). Anchors are shipped off-host to write-once sinks.

Verification checks the anchor chain (links, signatures, increasing sequence), every pair
of consecutive anchors (no seq going back, no row missing, no undeclared DDL change), that
every sink holds it (a sink left behind shows as a gap), its freshness, and the database
against every anchor: the chain is recomputed from genesis and must pass through each
anchored (seq, hash), so truncated newest rows, a rollback behind any anchor, a rewritten
row and a DDL or trigger change all show.

The sinks (``ztm.anchoring.sinks``) and the RFC 3161 client (``ztm.anchoring.rfc3161``) are
part of this package; the anchor host's shipper and CLI are in provision.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztm.anchoring import rfc3161
from ztm.anchoring.sinks import Sink, sink_for
from ztm.audit_chain import GENESIS, dump_rows, head_query, stream_rows, verify_rows
from ztm.data_plane import DATABASE
from ztm.db import quote_name
from ztm.errors import UserError
from ztm.keys import load_public_key
from ztm.target import Target

FORMAT = 1
DEFAULT_INTERVAL = 60  # seconds between anchors, unless [anchor].interval_seconds says otherwise
MAX_SKEW = 300  # seconds an anchor's time may be ahead of the verifier's clock (clocks differ a little)
TSA_SKEW = 300  # seconds the TSA's genTime may differ from the anchor's own time
Row = tuple[int, str, str, str]


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def anchor_settings(target: Target) -> tuple[dict[str, Any], list[Sink]]:
    """The target's [anchor] section and its sinks; UserError (exit 2) when there are none."""
    section = target.section("anchor")
    if not section.get("sinks"):
        raise UserError("the target has no [anchor] sinks", 2)
    try:
        return section, [sink_for(s, target.resolve) for s in section["sinks"]]
    except KeyError as exc:
        raise UserError(f"an [anchor] sink lacks the setting {exc.args[0]!r}", 2) from None


def interval(section: dict[str, Any]) -> float:
    """Seconds between anchors (freshness allows two)."""
    return float(section.get("interval_seconds", DEFAULT_INTERVAL))


def public_key(target: Target, section: dict[str, Any]) -> Ed25519PublicKey:
    """The anchors' Ed25519 public key named by [anchor].public_key; UserError (exit 2) otherwise."""
    try:
        path = target.resolve(section["public_key"])
        data = path.read_bytes()
    except (KeyError, OSError) as exc:
        raise UserError(f"cannot read [anchor].public_key: {exc}", 2) from None
    try:
        return load_public_key(data, str(path))
    except UserError as exc:
        raise UserError(f"cannot read [anchor].public_key: {exc}", 2) from None


def definitions(conn: pymysql.connections.Connection, database: str = DATABASE) -> dict[str, str]:
    """Per object ("kind:name"), a SHA-256 of every definition that decides what is recorded and
    enforced (provision/sql audit_definitions(): triggers, routines, views, tables' columns,
    keys and constraints), read through the definer so the auditor needs nothing more."""
    digests: dict[str, Any] = {}
    with conn.cursor() as cur:
        cur.execute(f"CALL {quote_name(database)}.audit_definitions()")
        for kind, name, part in cur.fetchall():
            digests.setdefault(f"{kind}:{name}", hashlib.sha256()).update(f"{part}\n".encode())
        while cur.nextset():
            pass
    if not any(k.startswith("trigger:") for k in digests):
        raise UserError("no trigger definitions visible through audit_definitions(): the digest would not cover "
                        "what records the trail")
    return {name: h.hexdigest() for name, h in sorted(digests.items())}


def digest_of(objects: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(objects.items())).encode()).hexdigest()


def ddl_digest(conn: pymysql.connections.Connection, database: str = DATABASE) -> str:
    """One SHA-256 over every definition (see ``definitions``)."""
    return digest_of(definitions(conn, database))


def changed_objects(before: dict[str, str], after: dict[str, str]) -> str:
    """The objects whose definition differs, by name: added, removed, changed."""
    parts = [f"{verb} {', '.join(names)}" for verb, names in (
        ("added", sorted(after.keys() - before.keys())), ("removed", sorted(before.keys() - after.keys())),
        ("changed", sorted(k for k in before.keys() & after.keys() if before[k] != after[k]))) if names]
    return "; ".join(parts) or "no object named (digests differ)"


def read_state(conn: pymysql.connections.Connection, database: str = DATABASE) -> dict[str, Any]:
    """Head and row count from one consistent snapshot: writers keep appending meanwhile."""
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            cur.execute(head_query(database))
            seq, head = cur.fetchone()
            cur.execute(f"SELECT COUNT(*) FROM {quote_name(database)}.audit_events WHERE seq <= %s", (seq,))
            (count,) = cur.fetchone()
        finally:
            cur.execute("COMMIT")
    objects = definitions(conn, database)
    return {"seq": int(seq), "head_hash": head, "row_count": int(count), "ddl_digest": digest_of(objects),
            "definitions": objects}


def make_anchor(state: dict[str, Any], previous: dict[str, Any] | None, key: Ed25519PrivateKey,
                target_name: str, ddl_change: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The next signed anchor. Never signs a time earlier than ``previous``'s (a clock set
    back): UserError instead, and the anchor host retries when its clock has caught up."""
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    if previous and at < _at(previous):
        raise UserError(f"the clock ({_iso(at)}) is behind the previous anchor's time "
                        f"({previous['checkpoint']['at']}, anchor {previous['checkpoint']['anchor_seq']}): "
                        "not signing an earlier time", 1)
    if previous and previous["checkpoint"].get("target") != target_name:
        raise UserError(f"the newest anchor in the sinks belongs to target {previous['checkpoint'].get('target')!r}, "
                        f"not {target_name!r}: refusing to link to another target's chain")
    checkpoint = {
        "v": FORMAT, "target": target_name, "anchor_seq": (previous["checkpoint"]["anchor_seq"] + 1) if previous else 1,
        "prev_anchor": record_hash(previous) if previous else GENESIS, "at": _iso(at), **state,
    }
    if ddl_change:  # signed with the rest: who reviewed what is part of the write-once record
        checkpoint["ddl_change"] = ddl_change
    public = key.public_key().public_bytes_raw()
    return {"checkpoint": checkpoint, "key_id": hashlib.sha256(public).hexdigest()[:16],
            "sig": base64.b64encode(key.sign(canonical(checkpoint))).decode()}


@dataclass
class AnchorReport:
    anchors: int = 0
    latest: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _at(record: dict[str, Any]) -> datetime:
    at = datetime.fromisoformat(record["checkpoint"]["at"].replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def without_repeats(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Exact repeats of an anchor (delivered again after the shipper died between shipping
    it and saving its buffer) counted once, with a note; a different anchor under an
    anchor_seq already seen is kept (the chain checks then name it)."""
    seen: dict[Any, str] = {}
    kept, repeats = [], []
    for record in records:
        checkpoint = record.get("checkpoint") if isinstance(record, dict) else None
        seq = checkpoint.get("anchor_seq") if isinstance(checkpoint, dict) else None
        digest = record_hash(record) if isinstance(record, dict) else ""
        if seq is not None and seen.get(seq) == digest:
            repeats.append(seq)
            continue
        seen.setdefault(seq, digest)
        kept.append(record)
    notes = [f"anchor(s) {', '.join(map(str, sorted(set(repeats))))} delivered more than once (a re-delivery "
             "after an interrupted shipment): counted once"] if repeats else []
    return kept, notes


def compare_consecutive(previous: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """What the database did between two anchors: it may only append, and only a declared
    (reviewed) change may alter the audit DDL or triggers."""
    a, b = previous["checkpoint"], record["checkpoint"]
    between = f"between anchor {a['anchor_seq']} ({a['at']}) and anchor {b['anchor_seq']} ({b['at']})"
    problems = []
    if _at(record) < _at(previous):
        problems.append(f"anchor time went backwards {between}: anchor {b['anchor_seq']} is dated before anchor "
                        f"{a['anchor_seq']} (a clock set back or an anchor back-dated)")
    if b["seq"] < a["seq"]:
        problems.append(f"audit seq went backwards {between} ({a['seq']} -> {b['seq']}): newest audit rows deleted "
                        "or the database rolled back")
    elif b["seq"] == a["seq"] and b["head_hash"] != a["head_hash"]:
        problems.append(f"the audit head at seq {b['seq']} changed its hash {between}: the newest row was rewritten")
    if b["row_count"] != b["seq"] and a["row_count"] == a["seq"]:
        problems.append(f"rows deleted {between}: anchor {b['anchor_seq']} counted {b['row_count']} audit rows up to "
                        f"seq {b['seq']}, the previous one {a['row_count']} up to seq {a['seq']}")
    if b["ddl_digest"] != a["ddl_digest"] and not b.get("ddl_change"):
        named = (changed_objects(a["definitions"], b["definitions"])
                 if isinstance(a.get("definitions"), dict) and isinstance(b.get("definitions"), dict)
                 else "the audit tables' DDL or guard triggers")
        problems.append(f"definitions changed {between} with no declared change ({named}); a reviewed change is "
                        "declared with 'ztm anchor once --ddl-change REASON'")
    return problems


def verify_anchor_chain(records: list[dict[str, Any]], public: Ed25519PublicKey, *,
                        allow_late_start: bool = False, target_name: str | None = None,
                        now: datetime | None = None, max_skew: float = MAX_SKEW) -> AnchorReport:
    """``allow_late_start``: a sink added after the first anchor holds a suffix of the chain
    (its first anchor is then checked against the primary sink, see ``verify_sinks``).
    ``target_name``: every anchor must name it (another target's anchors signed with the
    same key are refused). An anchor dated more than ``max_skew`` seconds after ``now`` is
    refused (a future-dated anchor would stay "fresh"); exact repeats count once."""
    records, repeat_notes = without_repeats(records)
    now = now or datetime.now(UTC)
    report, previous = AnchorReport(anchors=len(records), notes=repeat_notes), None
    for index, record in enumerate(records, 1):
        checkpoint = record.get("checkpoint", {})
        try:
            public.verify(base64.b64decode(record["sig"]), canonical(checkpoint))
        except (InvalidSignature, KeyError, ValueError, TypeError):
            report.problems.append(f"anchor {index} (anchor_seq {checkpoint.get('anchor_seq')}): signature does not "
                                   "verify with the anchor public key")
            return report
        if target_name is not None and checkpoint.get("target") != target_name:
            report.problems.append(f"anchor {checkpoint.get('anchor_seq')} belongs to target "
                                   f"{checkpoint.get('target')!r}, not {target_name!r}: another target's anchor "
                                   "signed with the same key")
            return report
        try:
            ahead = (_at(record) - now).total_seconds()
        except (KeyError, ValueError, TypeError, AttributeError):
            report.problems.append(f"anchor {checkpoint.get('anchor_seq')}: its time {checkpoint.get('at')!r} is not "
                                   "an ISO 8601 time")
            return report
        if ahead > max_skew:
            report.problems.append(f"anchor {checkpoint['anchor_seq']} is dated {checkpoint['at']}, {ahead:.0f} s in "
                                   f"the future (allowed clock skew {max_skew:.0f} s): a future-dated anchor would "
                                   "look fresh")
        if previous and checkpoint.get("anchor_seq") == previous["checkpoint"]["anchor_seq"]:
            report.problems.append(f"anchor_seq {checkpoint['anchor_seq']} appears twice with different content: the "
                                   "chain was forked (two anchors signed under one number)")
            return report
        expected_prev = record_hash(previous) if previous else GENESIS
        late_first = previous is None and allow_late_start
        if not late_first and checkpoint.get("prev_anchor") != expected_prev:
            report.problems.append(f"anchor {index}: prev_anchor does not link to the anchor before it "
                                   "(an anchor was removed, reordered or rewritten)")
            return report
        if previous and checkpoint["anchor_seq"] != previous["checkpoint"]["anchor_seq"] + 1:
            report.problems.append(f"anchor {index}: anchor_seq {checkpoint['anchor_seq']} does not follow "
                                   f"{previous['checkpoint']['anchor_seq']}")
            return report
        if previous is None and not late_first and checkpoint["row_count"] != checkpoint["seq"]:
            report.problems.append(f"anchor {checkpoint['anchor_seq']} counted {checkpoint['row_count']} audit rows "
                                   f"up to seq {checkpoint['seq']}: rows were already missing")
        if previous:
            report.problems += compare_consecutive(previous, record)
        if checkpoint.get("ddl_change"):
            report.notes.append(f"anchor {checkpoint['anchor_seq']} declares a reviewed DDL change: "
                                f"{checkpoint['ddl_change']}")
        previous = record
    report.latest = previous
    return report


def cross_check(primary: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[str]:
    """Anchors with the same anchor_seq must be the same anchor in every sink."""
    by_seq = {r["checkpoint"]["anchor_seq"]: record_hash(r) for r in primary}
    return [f"anchor_seq {r['checkpoint']['anchor_seq']} differs from the primary sink's"
            for r in other if by_seq.get(r["checkpoint"]["anchor_seq"], record_hash(r)) != record_hash(r)]


@dataclass
class SinksReport:
    reference: list[dict[str, Any]]  # the whole chain, as the sinks together hold it
    latest: dict[str, Any] | None
    problems: list[str]
    notes: list[str]
    per_sink: list[dict[str, Any]]


def verify_sinks(sinks: list[tuple[str, list[dict[str, Any]]]], public: Ed25519PublicKey, *,
                 grace_seconds: float, now: datetime | None = None, target_name: str | None = None,
                 max_skew: float = MAX_SKEW) -> SinksReport:
    """Each sink's chain, their agreement, the whole chain they hold together, and gaps: a
    sink that lacks anchors older than ``grace_seconds`` is down or cannot be written (its
    anchors wait in the anchor host's buffer). Exact repeats in a sink count once."""
    now = now or datetime.now(UTC)
    checks = {"target_name": target_name, "now": now, "max_skew": max_skew}
    problems: list[str] = []
    notes: list[str] = []
    unique = []
    for name, records in sinks:
        kept, repeats = without_repeats(records)
        unique.append((name, kept))
        notes += [f"{name}: {n}" for n in repeats]
    sinks = unique
    per_sink = []
    union: dict[int, dict[str, Any]] = {}
    primary = sinks[0][1] if sinks else []
    for index, (name, records) in enumerate(sinks):
        report = verify_anchor_chain(records, public, allow_late_start=index > 0, **checks)
        # A later sink repeats the primary's consecutive findings: report them once.
        own = report.problems if index == 0 else [p for p in report.problems if "between anchor" not in p]
        problems += [f"{name}: {p}" for p in own]
        if index:
            problems += [f"{name}: {p}" for p in cross_check(primary, records)]
        for record in records:
            union.setdefault(record["checkpoint"]["anchor_seq"], record)
        per_sink.append({"sink": name, "anchors": len(records), "problems": report.problems,
                         "newest": report.latest and report.latest["checkpoint"]["anchor_seq"]})
        notes += [] if index else report.notes
    reference = [union[s] for s in sorted(union)]
    whole = verify_anchor_chain(reference, public, **checks)
    if whole.problems and not problems:
        problems += [f"the anchors of all sinks together: {p}" for p in whole.problems]
    newest = reference[-1]["checkpoint"]["anchor_seq"] if reference else 0
    for name, records in sinks:
        held = max((r["checkpoint"]["anchor_seq"] for r in records), default=0)
        missing = [union[s] for s in range(held + 1, newest + 1) if s in union]
        if missing and (now - _at(missing[0])).total_seconds() > grace_seconds:
            problems.append(f"{name}: gap: anchors {held + 1}..{newest} were never delivered to this sink (the oldest "
                            f"is from {missing[0]['checkpoint']['at']}): the sink is down or cannot be written; the "
                            "anchor host keeps them in its local buffer")
        elif missing:
            notes.append(f"{name}: anchors {held + 1}..{newest} still in flight")
    return SinksReport(reference, whole.latest if reference else None, problems, notes, per_sink)


def check_freshness(latest: dict[str, Any] | None, max_age_seconds: float, now: datetime | None = None) -> str | None:
    if latest is None:
        return "no anchor has ever been shipped"
    age = ((now or datetime.now(UTC)) - _at(latest)).total_seconds()
    if age > max_age_seconds:
        return (f"the newest anchor is {age:.0f} s old (limit {max_age_seconds:.0f} s, two intervals): "
                "the anchor process is not running or cannot ship")
    return None


def _through_anchors(rows: Iterable[Row], anchored: dict[int, dict[str, Any]], found: list[str]) -> Iterator[Row]:
    """Pass the rows on; note the first anchored seq whose row does not carry the anchored hash."""
    for row in rows:
        checkpoint = anchored.get(int(row[0]))
        if checkpoint and row[3] != checkpoint["head_hash"] and not found:
            found.append(f"the audit chain does not pass through anchor {checkpoint['anchor_seq']} "
                         f"({checkpoint['at']}): row seq {row[0]} has hash {row[3][:16]}..., the anchor recorded "
                         f"{checkpoint['head_hash'][:16]}...: a row up to seq {row[0]} was rewritten or the database "
                         "was rolled back behind this anchor")
        yield row


def check_rows(rows: Iterable[Row], records: list[dict[str, Any]]) -> tuple[list[str], int, str]:
    """Recompute the chain from genesis; it must pass through every anchored (seq, hash).
    Returns the problems and the (seq, hash) the rows end at."""
    anchored = {r["checkpoint"]["seq"]: r["checkpoint"] for r in records if r["checkpoint"]["seq"]}
    problems: list[str] = []
    passing = _through_anchors(rows, anchored, problems)
    chain = verify_rows(passing)
    passing.close()  # verify_rows may stop early: release the rows (an unbuffered cursor) now
    if not chain.intact:
        problems.append(chain.describe())
    beyond = [c for s, c in sorted(anchored.items()) if s > chain.last_seq]
    if chain.intact and beyond:
        problems.append(f"the audit chain ends at seq {chain.last_seq}, behind anchor {beyond[0]['anchor_seq']} "
                        f"(seq {beyond[0]['seq']}): newest audit rows truncated or the database rolled back")
    return problems, chain.last_seq, chain.head_hash


def check_database(conn: pymysql.connections.Connection, records: list[dict[str, Any]],
                   database: str = DATABASE) -> list[str]:
    """The database against every anchor (the newest for the head, the count and the DDL),
    all read in one snapshot so that writers appending meanwhile do not disturb it."""
    if not records:
        return ["no valid anchor to compare the database with"]
    anchored = records[-1]["checkpoint"]
    problems = []
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            cur.execute(head_query(database))
            head = cur.fetchone()
            cur.execute(f"SELECT COUNT(*) FROM {quote_name(database)}.audit_events WHERE seq <= %s",
                        (anchored["seq"],))
            (count_upto,) = cur.fetchone()
            rows = stream_rows(conn, database=database)
            chain_problems, last_seq, last_hash = check_rows(rows, records)
            rows.close()
        finally:
            cur.execute("COMMIT")
    if head is None:
        problems.append("the audit chain head row is missing")
    elif int(head[0]) < anchored["seq"]:
        problems.append(f"the audit head is at seq {head[0]}, behind the anchored seq {anchored['seq']}: "
                        "newest audit rows truncated or the database rolled back")
    if count_upto != anchored["row_count"]:
        problems.append(f"{count_upto} audit rows up to seq {anchored['seq']}, the newest anchor counted "
                        f"{anchored['row_count']}: rows deleted or inserted behind the anchor")
    problems += chain_problems
    if head is not None and not chain_problems and (int(head[0]), head[1]) != (last_seq, last_hash):
        problems.append(f"the head row says seq {head[0]} but the chain ends at seq {last_seq}: rows truncated "
                        "or the head moved")
    current = definitions(conn, database)
    if digest_of(current) != anchored["ddl_digest"]:
        named = (changed_objects(anchored["definitions"], current) if isinstance(anchored.get("definitions"), dict)
                 else "the audit tables' DDL or guard triggers")
        problems.append(f"definitions changed since the newest anchor ({named}): triggers, routines, views or "
                        "tables differ from what was anchored")
    return problems


def read_export_head(path: Path) -> dict[str, Any] | None:
    """The head trailer of a 'ztm audit export' file (its last line), or None."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read audit export {path}: {exc.strerror}", 2) from None
    try:
        last = json.loads(tail[-1]) if tail else {}
    except ValueError:
        return None
    return last.get("head") if isinstance(last, dict) else None


def check_export(path: Path, records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """An offline export against the anchors: its chain passes through every anchor up to its
    head, and its head trailer matches where its rows end (an export cut short shows)."""
    head = read_export_head(path)
    if head is None:
        return [f"{path} has no head trailer: it was cut short (or written before exports carried one)"], []
    covered = [r for r in records if r["checkpoint"]["seq"] <= int(head["seq"])]
    problems, last_seq, last_hash = check_rows(dump_rows(path), covered)
    if (last_seq, last_hash) != (int(head["seq"]), head["head_hash"]):
        problems.append(f"{path}: the rows end at seq {last_seq} but the head trailer says seq {head['seq']}: "
                        "rows removed from the export")
    notes = [f"export head seq {head['seq']}: passes through anchors 1..{len(covered)}"
             + (f"; anchors {len(covered) + 1}..{len(records)} are newer than the export"
                if len(covered) < len(records) else "")]
    return problems, notes


def check_token(record: dict[str, Any], token: bytes, tsa_ca, max_skew: float = TSA_SKEW) -> None:
    """UserError unless ``token`` verifies over the anchor's checkpoint with the TSA's CA and
    its genTime is within ``max_skew`` seconds of the anchor's own time."""
    rfc3161.verify(canonical(record["checkpoint"]), token, tsa_ca)
    stamped = rfc3161.gen_time(token)
    apart = (stamped - _at(record)).total_seconds()
    if abs(apart) > max_skew:
        raise UserError(f"the TSA's genTime {_iso(stamped)} is {abs(apart):.0f} s "
                        f"{'after' if apart > 0 else 'before'} the anchor's time {record['checkpoint']['at']} "
                        f"(allowed {max_skew:.0f} s): the anchor's clock or time is wrong")


def check_timestamps(records: list[dict[str, Any]], tsa_ca) -> tuple[list[str], list[str]]:
    """Every anchor's RFC 3161 token must verify over its checkpoint with the TSA's CA, its
    genTime within ``TSA_SKEW`` of the anchor's time. Returns (problems, notes).

    An anchor shipped while the TSA was down carries none (and says why, ``tst_missing``).
    The next anchor links to it by hash, so that anchor's token bounds its time: a note.
    The newest anchors lacking one (the TSA is down now) are a problem."""
    problems: list[str] = []
    notes: list[str] = []
    untimed: list[str] = []
    for record in records:
        seq = record["checkpoint"]["anchor_seq"]
        if "tst" not in record:
            why = f" (the TSA was unavailable: {record['tst_missing']})" if record.get("tst_missing") else ""
            untimed.append(f"anchor {seq} carries no RFC 3161 timestamp{why}")
            continue
        try:
            check_token(record, base64.b64decode(record["tst"]), tsa_ca)
        except (UserError, ValueError, TypeError) as exc:
            problems.append(f"anchor {seq}: the timestamp does not verify ({exc})")
            continue
        notes += [f"{u}; its time is bounded by anchor {seq}'s timestamp" for u in untimed]
        untimed = []
    problems += [f"{u}, nor does any later anchor" for u in untimed]
    return problems, notes
