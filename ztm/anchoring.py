"""Signed checkpoints of the audit chain ("anchors"), and their verification.

An anchor records, as read by the auditor: the head seq and hash, the row count, a digest
of the audit tables' DDL and guard triggers, the time, its own sequence number and the hash
of the previous anchor; it is signed with Ed25519. Anchors are shipped off-host to
write-once sinks. Verification checks the anchor chain (links, signatures, increasing
sequence), its freshness, and the database against the newest anchor: truncated newest
rows, a rollback behind the anchor, a rewritten row and a DDL or trigger change all show.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymysql
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztm.audit_chain import GENESIS, verify_database
from ztm.errors import UserError

FORMAT = 1


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def ddl_digest(conn: pymysql.connections.Connection) -> str:
    """SHA-256 over the audit tables' CREATE statements and their trigger definitions."""
    parts = []
    with conn.cursor() as cur:
        for table in ("audit_events", "audit_chain_head"):
            cur.execute(f"SHOW CREATE TABLE securedb.{table}")  # fixed names
            parts.append(cur.fetchone()[1])
        cur.execute("CALL securedb.audit_guard_definitions()")
        triggers = cur.fetchall()
        while cur.nextset():
            pass
        if not triggers:
            raise UserError("no trigger definitions visible through audit_guard_definitions(): "
                            "the digest would not cover the guards")
        parts += ["|".join(str(v) for v in row) for row in triggers]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_state(conn: pymysql.connections.Connection) -> dict[str, Any]:
    """Head and row count from one consistent snapshot: writers keep appending meanwhile."""
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            cur.execute("SELECT seq, head_hash FROM securedb.audit_chain_head WHERE id = 1")
            seq, head = cur.fetchone()
            cur.execute("SELECT COUNT(*) FROM securedb.audit_events WHERE seq <= %s", (seq,))
            (count,) = cur.fetchone()
        finally:
            cur.execute("COMMIT")
    return {"seq": int(seq), "head_hash": head, "row_count": int(count), "ddl_digest": ddl_digest(conn)}


def make_anchor(state: dict[str, Any], previous: dict[str, Any] | None, key: Ed25519PrivateKey,
                target_name: str) -> dict[str, Any]:
    checkpoint = {
        "v": FORMAT, "target": target_name, "anchor_seq": (previous["checkpoint"]["anchor_seq"] + 1) if previous else 1,
        "prev_anchor": record_hash(previous) if previous else GENESIS,
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"), **state,
    }
    public = key.public_key().public_bytes_raw()
    return {"checkpoint": checkpoint, "key_id": hashlib.sha256(public).hexdigest()[:16],
            "sig": base64.b64encode(key.sign(canonical(checkpoint))).decode()}


@dataclass
class AnchorReport:
    anchors: int = 0
    latest: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_anchor_chain(records: list[dict[str, Any]], public: Ed25519PublicKey, *,
                        allow_late_start: bool = False) -> AnchorReport:
    """``allow_late_start``: a sink added after the first anchor holds a suffix of the chain
    (its first anchor is then checked against the primary sink, see ``cross_check``)."""
    report, previous = AnchorReport(anchors=len(records)), None
    for index, record in enumerate(records, 1):
        checkpoint = record.get("checkpoint", {})
        try:
            public.verify(base64.b64decode(record["sig"]), canonical(checkpoint))
        except (InvalidSignature, KeyError, ValueError):
            report.problems.append(f"anchor {index} (anchor_seq {checkpoint.get('anchor_seq')}): signature does not "
                                   "verify with the anchor public key")
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
        if previous and checkpoint["seq"] < previous["checkpoint"]["seq"]:
            report.problems.append(f"anchor {index}: audit seq went backwards ({previous['checkpoint']['seq']} -> "
                                   f"{checkpoint['seq']})")
            return report
        previous = record
    report.latest = previous
    return report


def cross_check(primary: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[str]:
    """Anchors with the same anchor_seq must be the same anchor in every sink."""
    by_seq = {r["checkpoint"]["anchor_seq"]: record_hash(r) for r in primary}
    return [f"anchor_seq {r['checkpoint']['anchor_seq']} differs from the primary sink's"
            for r in other if by_seq.get(r["checkpoint"]["anchor_seq"], record_hash(r)) != record_hash(r)]


def check_freshness(latest: dict[str, Any] | None, max_age_seconds: float) -> str | None:
    if latest is None:
        return "no anchor has ever been shipped"
    at = datetime.fromisoformat(latest["checkpoint"]["at"].replace("Z", "+00:00"))
    age = (datetime.now(UTC) - at).total_seconds()
    if age > max_age_seconds:
        return (f"the newest anchor is {age:.0f} s old (limit {max_age_seconds:.0f} s, two intervals): "
                "the anchor process is not running or cannot ship")
    return None


def check_database(conn: pymysql.connections.Connection, latest: dict[str, Any]) -> list[str]:
    """The database against the newest anchor."""
    anchored = latest["checkpoint"]
    now = read_state(conn)
    problems = []
    if now["seq"] < anchored["seq"]:
        problems.append(f"the audit head is at seq {now['seq']}, behind the anchored seq {anchored['seq']}: "
                        "newest audit rows truncated or the database rolled back")
    with conn.cursor() as cur:
        cur.execute("SELECT curr_hash FROM securedb.audit_events WHERE seq = %s", (anchored["seq"],))
        row = cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM securedb.audit_events WHERE seq <= %s", (anchored["seq"],))
        (count_upto,) = cur.fetchone()
    if anchored["seq"] and row is None:
        problems.append(f"the anchored audit row seq {anchored['seq']} is gone (truncation or rollback)")
    elif row is not None and row[0] != anchored["head_hash"]:
        problems.append(f"audit row seq {anchored['seq']} no longer has the anchored hash: rewritten or rolled back")
    if count_upto != anchored["row_count"]:
        problems.append(f"{count_upto} audit rows up to seq {anchored['seq']}, the anchor counted "
                        f"{anchored['row_count']}: rows deleted or inserted behind the anchor")
    if now["ddl_digest"] != anchored["ddl_digest"]:
        problems.append("the audit tables' DDL or guard triggers changed since the newest anchor")
    if not problems:
        chain = verify_database(conn, start_seq=anchored["seq"], start_hash=anchored["head_hash"])
        if not chain.intact:
            problems.append(f"after the anchor: {chain.describe()}")
    return problems


def check_timestamps(records: list[dict[str, Any]], tsa_ca) -> list[str]:
    """Every anchor carries an RFC 3161 token over its checkpoint that verifies with the TSA's CA."""
    from provision import tsa

    problems = []
    for record in records:
        seq = record["checkpoint"]["anchor_seq"]
        if "tst" not in record:
            problems.append(f"anchor {seq} carries no RFC 3161 timestamp")
            continue
        try:
            tsa.verify(canonical(record["checkpoint"]), base64.b64decode(record["tst"]), tsa_ca)
        except UserError as exc:
            problems.append(f"anchor {seq}: the timestamp does not verify ({exc})")
    return problems
