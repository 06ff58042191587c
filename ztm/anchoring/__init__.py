"""Signed checkpoints of the audit chain ("anchors"), and their verification.

An anchor records, as read by the auditor: every lane's head seq and hash and row count
(``lanes``), one digest binding them (``heads_digest``), the total of events, a digest
per object of every definition that decides what is recorded and enforced (all triggers,
routines and views, the tables' columns, keys and constraints) and one over them all, the
time, its own sequence number and the hash of the previous anchor; it is signed with
Ed25519. A reviewed change of any of those definitions is declared in the anchor taken
after it (``ddl_change``). Anchors are shipped off-host to write-once sinks.

Verification checks the anchor chain (links, signatures, increasing sequence), every pair
of consecutive anchors (no lane's seq going back, no lane dropped, no row missing, no
undeclared DDL change), that
every sink holds it (a sink left behind shows as a gap), its freshness, and the database
against every anchor: every lane is recomputed from genesis and must pass through each
anchored (seq, hash) of that lane, so truncated newest rows, a rollback behind any anchor, a
rewritten row and a DDL or trigger change all show. Anchors of the single-chain format (v1,
before lanes) are refused with one line: the trail they describe no longer exists.

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
from ztm.audit_chain import (
    GENESIS,
    LANES,
    OLD_SHAPE,
    dump_rows,
    heads_digest,
    read_heads,
    stream_trail,
    verify_lanes,
)
from ztm.data_plane import DATABASE
from ztm.db import quote_name
from ztm.errors import UserError
from ztm.keys import load_public_key
from ztm.target import Target

FORMAT = 2  # 2: per-lane heads; 1 (a single chain) is refused
DEFAULT_INTERVAL = 60  # seconds between anchors, unless [anchor].interval_seconds says otherwise
MAX_SKEW = 300  # seconds an anchor's time may be ahead of the verifier's clock (clocks differ a little)
TSA_SKEW = 300  # seconds the TSA's genTime may differ from the anchor's own time
Row = tuple[int, int, str, str, str]  # lane, seq, payload, prev_hash, curr_hash


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
    """Every lane's head and row count from one consistent snapshot: writers keep appending."""
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            heads = read_heads(conn, database)
            cur.execute(f"SELECT lane, COUNT(*) FROM {quote_name(database)}.audit_events GROUP BY lane")
            counts = {int(lane): int(n) for lane, n in cur.fetchall()}
        finally:
            cur.execute("COMMIT")
    objects = definitions(conn, database)
    return make_state(heads, digest_of(objects), objects, counts)


def make_state(heads: dict[int, tuple[int, str]], ddl_digest: str, objects: dict[str, str] | None = None,
               counts: dict[int, int] | None = None) -> dict[str, Any]:
    """What an anchor records of the trail: every lane's (seq, head_hash, row_count), lanes not
    in ``heads`` at genesis; the digest binding the heads; the definitions' digest (and the
    per-object digests when given). ``counts`` defaults to each lane's seq."""
    heads = {**{lane: (0, GENESIS) for lane in range(LANES)}, **heads}
    counts = counts if counts is not None else {lane: seq for lane, (seq, _) in heads.items()}
    lanes = {str(lane): {"seq": seq, "head_hash": h, "row_count": counts.get(lane, 0)}
             for lane, (seq, h) in sorted(heads.items())}
    state = {"events": sum(seq for seq, _ in heads.values()), "lanes": lanes, "heads_digest": heads_digest(heads),
             "ddl_digest": ddl_digest}
    return {**state, "definitions": objects} if objects is not None else state


def lane_heads(checkpoint: dict[str, Any]) -> dict[int, tuple[int, str]]:
    """An anchor's lane -> (seq, head_hash)."""
    return {int(lane): (int(v["seq"]), v["head_hash"]) for lane, v in checkpoint["lanes"].items()}


def shape_problem(checkpoint: dict[str, Any]) -> str | None:
    """Why an anchor is not of this format (one line), or None."""
    if checkpoint.get("v") == 1 or ("lanes" not in checkpoint and "head_hash" in checkpoint):
        return (f"anchor {checkpoint.get('anchor_seq')} is of the single-chain format (v1, before the trail had "
                "lanes): it cannot vouch for a trail of lanes; start a new anchor chain (new sink or key) after the "
                "upgrade")
    lanes = checkpoint.get("lanes")
    try:
        heads = lane_heads(checkpoint)
    except (AttributeError, KeyError, TypeError, ValueError):
        return f"anchor {checkpoint.get('anchor_seq')} has no readable per-lane heads"
    if sorted(heads) != list(range(LANES)):
        return (f"anchor {checkpoint.get('anchor_seq')} records {len(lanes)} lanes, not the trail's {LANES}: a lane "
                "was dropped from it")
    if checkpoint.get("heads_digest") != heads_digest(heads):
        return f"anchor {checkpoint.get('anchor_seq')}: heads_digest does not bind its lane heads"
    return None


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
    for lane in sorted(set(a["lanes"]) | set(b["lanes"]), key=int):
        x, y = a["lanes"].get(lane), b["lanes"].get(lane)
        if y is None:
            problems.append(f"lane {lane} disappeared {between}: the newer anchor does not record it")
            continue
        if x is None:
            continue
        if y["seq"] < x["seq"]:
            problems.append(f"audit seq of lane {lane} went backwards {between} ({x['seq']} -> {y['seq']}): newest "
                            "audit rows deleted or the database rolled back")
        elif y["seq"] == x["seq"] and y["head_hash"] != x["head_hash"]:
            problems.append(f"the audit head of lane {lane} at seq {y['seq']} changed its hash {between}: the newest "
                            "row was rewritten")
        if y["row_count"] != y["seq"] and x["row_count"] == x["seq"]:
            problems.append(f"rows of lane {lane} deleted {between}: anchor {b['anchor_seq']} counted "
                            f"{y['row_count']} rows up to seq {y['seq']}, the previous one {x['row_count']} up to "
                            f"seq {x['seq']}")
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
        shape = shape_problem(checkpoint)
        if shape:
            report.problems.append(shape)
            return report
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
        short = [lane for lane, v in sorted(checkpoint["lanes"].items(), key=lambda i: int(i[0]))
                 if v["row_count"] != v["seq"]]
        if previous is None and not late_first and short:
            report.problems.append(f"anchor {checkpoint['anchor_seq']} counted fewer audit rows than the head seq in "
                                   f"lanes {', '.join(short)}: rows were already missing")
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


def _through_anchors(rows: Iterable[Row], anchored: dict[tuple[int, int], dict[str, Any]],
                     found: list[str]) -> Iterator[Row]:
    """Pass the rows on; note the first anchored (lane, seq) whose row does not carry the anchored hash."""
    for row in rows:
        checkpoint = anchored.get((int(row[0]), int(row[1])))
        if checkpoint and row[4] != checkpoint["lanes"][str(row[0])]["head_hash"] and not found:
            found.append(f"lane {row[0]} of the audit trail does not pass through anchor {checkpoint['anchor_seq']} "
                         f"({checkpoint['at']}): row seq {row[1]} has hash {row[4][:16]}..., the anchor recorded "
                         f"{checkpoint['lanes'][str(row[0])]['head_hash'][:16]}...: a row of that lane up to seq "
                         f"{row[1]} was rewritten or the database was rolled back behind this anchor")
        yield row


def check_rows(rows: Iterable[Row], records: list[dict[str, Any]]) -> tuple[list[str], dict[int, tuple[int, str]]]:
    """Recompute every lane from genesis; each must pass through every anchored (seq, hash)
    of it. Returns the problems and the (seq, hash) each lane ends at."""
    anchored = {(lane, seq): r["checkpoint"] for r in records
                for lane, (seq, _) in lane_heads(r["checkpoint"]).items() if seq}
    problems: list[str] = []
    passing = _through_anchors(rows, anchored, problems)
    trail = verify_lanes(passing)
    passing.close()  # verification may stop early: release the rows (an unbuffered cursor) now
    if not trail.intact:
        problems.append(trail.describe())
    ends = trail.heads()
    for (lane, seq), checkpoint in sorted(anchored.items()):
        lane_report = trail.lane(lane)
        if lane_report.intact and seq > ends[lane][0]:
            problems.append(f"lane {lane} of the audit trail ends at seq {ends[lane][0]}, behind anchor "
                            f"{checkpoint['anchor_seq']} (seq {seq}): newest audit rows truncated or the database "
                            "rolled back")
            break
    return problems, ends


def check_database(conn: pymysql.connections.Connection, records: list[dict[str, Any]],
                   database: str = DATABASE) -> list[str]:
    """The database against every anchor (the newest for the heads, the counts and the DDL),
    all read in one snapshot so that writers appending meanwhile do not disturb it."""
    if not records:
        return ["no valid anchor to compare the database with"]
    anchored = records[-1]["checkpoint"]
    anchored_heads = lane_heads(anchored)
    problems = []
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            heads = read_heads(conn, database)
            counts: dict[int, int] = {}
            for lane, (seq, _) in anchored_heads.items():
                if seq:
                    cur.execute(f"SELECT COUNT(*) FROM {quote_name(database)}.audit_events WHERE lane = %s "
                                "AND seq <= %s", (lane, seq))
                    counts[lane] = int(cur.fetchone()[0])
            rows = stream_trail(conn, database=database, binary=False)
            chain_problems, ends = check_rows(rows, records)
            rows.close()
        finally:
            cur.execute("COMMIT")
    for lane, (seq, _) in sorted(anchored_heads.items()):
        if lane not in heads:
            problems.append(f"the head row of lane {lane} is missing")
        elif heads[lane][0] < seq:
            problems.append(f"the audit head of lane {lane} is at seq {heads[lane][0]}, behind the anchored seq "
                            f"{seq}: newest audit rows truncated or the database rolled back")
        if seq and counts.get(lane) != anchored["lanes"][str(lane)]["row_count"]:
            problems.append(f"{counts.get(lane)} audit rows of lane {lane} up to seq {seq}, the newest anchor counted "
                            f"{anchored['lanes'][str(lane)]['row_count']}: rows deleted or inserted behind the anchor")
    problems += chain_problems
    if not chain_problems:
        moved = sorted(lane for lane, head in heads.items() if head != ends.get(lane))
        if moved:
            problems.append(f"the head rows of lanes {moved} do not point at the last event of their lane: rows "
                            "truncated or the head moved")
    current = definitions(conn, database)
    if digest_of(current) != anchored["ddl_digest"]:
        named = (changed_objects(anchored["definitions"], current) if isinstance(anchored.get("definitions"), dict)
                 else "the audit tables' DDL or guard triggers")
        problems.append(f"definitions changed since the newest anchor ({named}): triggers, routines, views or "
                        "tables differ from what was anchored")
    return problems


def read_export_head(path: Path) -> dict[str, Any] | None:
    """The trailer of a 'ztm audit export' file (its last line), or None. A single-chain
    export's trailer ({"head": ...}) is refused with one line."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            tail = handle.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read audit export {path}: {exc.strerror}", 2) from None
    try:
        last = json.loads(tail[-1]) if tail else {}
    except ValueError:
        return None
    if isinstance(last, dict) and "head" in last and "heads" not in last:
        raise UserError(f"{path}: {OLD_SHAPE}", 2)
    return last if isinstance(last, dict) and isinstance(last.get("heads"), dict) else None


def check_export(path: Path, records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """An offline export against the anchors: each lane passes through every anchor up to the
    export's head of that lane, and the trailer matches where each lane's rows end."""
    trailer = read_export_head(path)
    if trailer is None:
        return [f"{path} has no head trailer: it was cut short (or written before exports carried one)"], []
    try:
        heads = {int(lane): (int(v["seq"]), v["head_hash"]) for lane, v in trailer["heads"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return [f"{path}: the head trailer is not readable"], []
    covered = [r for r in records if all(seq <= heads.get(lane, (0, GENESIS))[0]
                                         for lane, (seq, _) in lane_heads(r["checkpoint"]).items())]
    problems, ends = check_rows(dump_rows(path), covered)
    cut = sorted(lane for lane, head in heads.items() if head != ends.get(lane, (0, GENESIS)))
    if cut:
        problems.append(f"{path}: the rows of lanes {cut} do not end where the head trailer says: rows removed from "
                        "the export")
    notes = [f"export of {sum(s for s, _ in heads.values())} events: passes through anchors 1..{len(covered)}"
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
