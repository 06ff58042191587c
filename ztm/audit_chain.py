"""Verify the audit hash chain (provision/sql/020_audit.sql documents the format).

    curr_hash(n) = hex(SHA-256(prev_hash(n) || payload(n)))   (UTF-8 bytes)
    prev_hash(n) = curr_hash(n-1),  prev_hash(1) = "0" * 64

Rows are streamed (an unbuffered cursor, or a JSON-lines dump read line by line), so
memory stays constant however long the chain is. Verification can start from a trusted
(seq, head) pair, e.g. a signed anchor, and check only what came after it.

Online, the rows, the head row and the starting point are read in one consistent snapshot
(REPEATABLE READ, START TRANSACTION WITH CONSISTENT SNAPSHOT): writers keep appending
while a long chain streams, and a head read after the rows would be newer than the last
row read and look like a truncation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from ztm.errors import UserError

GENESIS = "0" * 64
ROW_QUERY = ("SELECT seq, payload, prev_hash, curr_hash FROM securedb.audit_events "
             "WHERE seq > %s ORDER BY seq")
HEAD_QUERY = "SELECT seq, head_hash FROM securedb.audit_chain_head WHERE id = 1"

# Exit codes of `ztm audit verify`.
EXIT_INTACT, EXIT_BROKEN, EXIT_UNUSABLE = 0, 1, 2


def link_hash(prev_hash: str, payload: str) -> str:
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


@dataclass
class ChainReport:
    intact: bool
    checked: int
    first_seq: int | None
    last_seq: int
    head_hash: str
    broken_seq: int | None = None
    reason: str | None = None
    head_row: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.intact:
            span = f"seq {self.first_seq}..{self.last_seq}" if self.checked else f"no events after seq {self.last_seq}"
            return f"audit chain intact: {self.checked} events checked ({span}), head {self.head_hash}"
        return f"audit chain broken at seq {self.broken_seq}: {self.reason}"


def verify_rows(rows: Iterable[tuple[int, str, str, str]], *, start_seq: int = 0,
                start_hash: str = GENESIS) -> ChainReport:
    """Recompute every link; stop at the first broken row and say why."""
    expected_seq, head, checked, first = start_seq + 1, start_hash, 0, None
    for seq, payload, prev_hash, curr_hash in rows:
        seq = int(seq)
        first = seq if first is None else first
        if seq != expected_seq:
            reason = (f"gap: expected seq {expected_seq}, found {seq} (rows {expected_seq}..{seq - 1} missing)"
                      if seq > expected_seq else f"sequence out of order: seq {seq} after {expected_seq - 1}")
            return ChainReport(False, checked, first, expected_seq - 1, head, expected_seq, reason)
        if prev_hash != head:
            return ChainReport(False, checked, first, seq - 1, head, seq,
                               f"link mismatch: prev_hash {prev_hash[:16]}... is not the hash of seq {seq - 1} "
                               f"({head[:16]}...)")
        computed = link_hash(prev_hash, payload)
        if computed != curr_hash:
            return ChainReport(False, checked, first, seq - 1, head, seq,
                               f"hash mismatch: stored {curr_hash[:16]}..., recomputed {computed[:16]}... "
                               "(payload or hash altered)")
        head, expected_seq, checked = curr_hash, seq + 1, checked + 1
    return ChainReport(True, checked, first, expected_seq - 1, head)


def stream_rows(conn: pymysql.connections.Connection, start_seq: int = 0,
                batch: int = 2000) -> Iterator[tuple[int, str, str, str]]:
    """Rows after ``start_seq`` through an unbuffered cursor (constant memory)."""
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(ROW_QUERY, (start_seq,))
        while True:
            chunk = cur.fetchmany(batch)
            if not chunk:
                return
            yield from chunk


@contextmanager
def chain_snapshot(conn: pymysql.connections.Connection) -> Iterator[None]:
    """Every read inside sees the chain as it was at one instant (InnoDB consistent read)."""
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the next transaction only
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    try:
        yield
    finally:
        if conn.open:
            conn.rollback()


def read_head(conn: pymysql.connections.Connection) -> tuple[int, str] | None:
    with conn.cursor() as cur:
        cur.execute(HEAD_QUERY)
        row = cur.fetchone()
    return (int(row[0]), row[1]) if row else None


def check_head(report: ChainReport, head: tuple[int, str] | None) -> ChainReport:
    """An intact chain must end where the head row says it does."""
    report.head_row = {"seq": head[0], "head_hash": head[1]} if head else None
    if not report.intact:
        return report
    if head is None:
        report.intact, report.broken_seq, report.reason = False, None, "the chain head row is missing"
    elif head[0] != report.last_seq or head[1] != report.head_hash:
        report.intact = False
        report.broken_seq = min(head[0], report.last_seq) + 1
        report.reason = (f"head mismatch: the head row says seq {head[0]} ({head[1][:16]}...) but the "
                         f"chain ends at seq {report.last_seq} ({report.head_hash[:16]}...): rows truncated "
                         "or head moved")
    return report


def verify_database(conn: pymysql.connections.Connection, *, start_seq: int = 0,
                    start_hash: str = GENESIS) -> ChainReport:
    """Verify the stored chain and that the head row points at its last event, all in one
    consistent snapshot (the connection must not be inside a transaction)."""
    with chain_snapshot(conn):
        if start_seq:
            with conn.cursor() as cur:
                cur.execute("SELECT curr_hash FROM securedb.audit_events WHERE seq = %s", (start_seq,))
                row = cur.fetchone()
            if row is None or row[0] != start_hash:
                found = "no such row" if row is None else f"stored {row[0][:16]}..."
                return ChainReport(False, 0, None, start_seq, start_hash, start_seq,
                                   "the trusted starting point does not match the database at seq "
                                   f"{start_seq} ({found})")
        rows = stream_rows(conn, start_seq)
        try:
            report = verify_rows(rows, start_seq=start_seq, start_hash=start_hash)
        finally:
            rows.close()  # a broken chain stops early: drain the unbuffered result before the next query
        return check_head(report, read_head(conn))


def export_rows(conn: pymysql.connections.Connection, out: Path) -> int:
    """Write the chain as JSON lines (seq, payload, prev_hash, curr_hash) for offline checks,
    then a head trailer {"head": {seq, head_hash}, "rows": n} read in the same snapshot, so an
    offline export's head can be matched to a signed anchor (and an export cut short shows)."""
    count = 0
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute(HEAD_QUERY)
        head = cur.fetchone()
    with open(out, "w", encoding="utf-8") as handle:
        for seq, payload, prev_hash, curr_hash in stream_rows(conn):
            handle.write(json.dumps({"seq": seq, "payload": payload, "prev_hash": prev_hash,
                                     "curr_hash": curr_hash}, ensure_ascii=False) + "\n")
            count += 1
        if head is not None:
            handle.write(json.dumps({"head": {"seq": head[0], "head_hash": head[1]}, "rows": count}) + "\n")
    conn.commit()
    return count


def _numbered_lines(handle, path: Path) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(handle, 1):
            yield number, line
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (after line {number})", EXIT_UNUSABLE) from None


def dump_rows(path: Path, start_seq: int = 0) -> Iterator[tuple[int, str, str, str]]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115  (closed when the generator ends)
    except OSError as exc:
        raise UserError(f"cannot read audit dump {path}: {exc.strerror}", EXIT_UNUSABLE) from None
    with handle:
        for number, line in _numbered_lines(handle, path):
            try:
                row = json.loads(line)
                if "head" in row and "seq" not in row:
                    continue  # the head trailer of 'ztm audit export'
                seq = row["seq"]
                if not isinstance(seq, int) or isinstance(seq, bool):  # 1e400, "7", true: not a seq
                    raise TypeError
                item = (seq, row["payload"], row["prev_hash"], row["curr_hash"])
            except (ValueError, KeyError, TypeError, RecursionError):
                raise UserError(f"{path}: line {number} is not an audit row (JSON with seq, payload, "
                                "prev_hash, curr_hash)", EXIT_UNUSABLE) from None
            if seq > start_seq:
                yield item
