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
import itertools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from ztm.data_plane import DATABASE
from ztm.db import quote_name
from ztm.errors import UserError

GENESIS = "0" * 64


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import MySQLdb
    except ImportError:
        return (pymysql.MySQLError,)
    return (pymysql.MySQLError, MySQLdb.MySQLError)


DRIVER_ERRORS = _driver_errors()  # what either driver raises for a server or connection error


def row_query(database: str = DATABASE) -> str:
    return (f"SELECT seq, payload, prev_hash, curr_hash FROM {quote_name(database)}.audit_events "
            "WHERE seq > %s ORDER BY seq")


def head_query(database: str = DATABASE) -> str:
    return f"SELECT seq, head_hash FROM {quote_name(database)}.audit_chain_head WHERE id = 1"


# Exit codes of `ztm audit verify`.
EXIT_INTACT, EXIT_BROKEN, EXIT_UNUSABLE = 0, 1, 2


def link_hash(prev_hash: str, payload: str) -> str:
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


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


def verify_rows(rows: Iterable[tuple[int, Any, Any, Any]], *, start_seq: int = 0,
                start_hash: str = GENESIS) -> ChainReport:
    """Recompute every link; stop at the first broken row and say why. Rows are (seq,
    payload, prev_hash, curr_hash), all str or all bytes (the payload's UTF-8 and the hex
    hashes, as the fast row stream reads them: no decoding per row)."""
    rows = iter(rows)
    first_row = next(rows, None)
    if first_row is None:
        return ChainReport(True, 0, None, start_seq, start_hash)
    binary = isinstance(first_row[2], bytes)
    head: Any = start_hash.encode("ascii") if binary else start_hash
    report = _verify(itertools.chain((first_row,), rows), start_seq + 1, head, binary)
    report.head_hash = _text(report.head_hash)
    return report


def _verify(rows: Iterator[tuple[int, Any, Any, Any]], expected_seq: int, head: Any, binary: bool) -> ChainReport:
    sha256 = hashlib.sha256
    checked, first = 0, None
    for seq, payload, prev_hash, curr_hash in rows:
        seq = int(seq)
        if first is None:
            first = seq
        if seq != expected_seq:
            reason = (f"gap: expected seq {expected_seq}, found {seq} (rows {expected_seq}..{seq - 1} missing)"
                      if seq > expected_seq else f"sequence out of order: seq {seq} after {expected_seq - 1}")
            return ChainReport(False, checked, first, expected_seq - 1, head, expected_seq, reason)
        if prev_hash != head:
            return ChainReport(False, checked, first, seq - 1, head, seq,
                               f"link mismatch: prev_hash {_text(prev_hash)[:16]}... is not the hash of seq "
                               f"{seq - 1} ({_text(head)[:16]}...)")
        if binary:
            computed = sha256(prev_hash + payload).hexdigest().encode("ascii")
        else:
            computed = sha256((prev_hash + payload).encode("utf-8")).hexdigest()
        if computed != curr_hash:
            return ChainReport(False, checked, first, seq - 1, head, seq,
                               f"hash mismatch: stored {_text(curr_hash)[:16]}..., recomputed "
                               f"{_text(computed)[:16]}... (payload or hash altered)")
        head, expected_seq, checked = curr_hash, seq + 1, checked + 1
    return ChainReport(True, checked, first, expected_seq - 1, head)


def row_query_bytes(database: str = DATABASE) -> str:
    """The rows of (lo, hi] as bytes with either driver: the payload's stored UTF-8 and the
    hex hashes, hashed as they are (no decoding, no re-encoding per row)."""
    return (f"SELECT seq, CAST(payload AS BINARY), CAST(prev_hash AS BINARY), CAST(curr_hash AS BINARY) "
            f"FROM {quote_name(database)}.audit_events WHERE seq > %s AND seq <= %s ORDER BY seq")


def _unbuffered_cursor(conn: Any) -> Any:
    """An unbuffered cursor of the connection's driver (pymysql, or mysqlclient's MySQLdb)."""
    if isinstance(conn, pymysql.connections.Connection):
        return conn.cursor(pymysql.cursors.SSCursor)
    import MySQLdb.cursors  # only a mysqlclient connection gets here

    return conn.cursor(MySQLdb.cursors.SSCursor)


def stream_rows(conn: Any, start_seq: int = 0, batch: int = 2000, *, database: str = DATABASE,
                end_seq: int | None = None, binary: bool = False) -> Iterator[tuple[int, Any, Any, Any]]:
    """Rows after ``start_seq`` (up to ``end_seq``) through an unbuffered cursor (constant
    memory); ``binary`` gives bytes columns (the fast path), else str."""
    if binary or end_seq is not None:
        sql, args = row_query_bytes(database), (start_seq, (1 << 63) - 1 if end_seq is None else end_seq)
    else:
        sql, args = row_query(database), (start_seq,)
    cur = _unbuffered_cursor(conn)
    try:
        cur.execute(sql, args)
        while True:
            chunk = cur.fetchmany(batch)
            if not chunk:
                return
            yield from chunk
    finally:
        cur.close()  # a broken chain stops early: the unbuffered result is drained here


# -- Segment-parallel verification -------------------------------------------------------------
# Each worker verifies the links and hashes inside one seq range on its own connection; the
# joins (each range's first prev_hash = the previous range's last curr_hash, and no seq
# missing between ranges) are checked here in seq order, so the verdict is the serial one.
# Rows at or below the snapshot's last seq never change under an intact guard, so the
# workers' own snapshots read the same rows as the coordinator's.
MIN_SEGMENT_ROWS = 50_000


@dataclass
class SegmentResult:
    first_seq: int | None
    first_prev: str | None
    report: ChainReport


def verify_segment(rows: Iterable[tuple[int, Any, Any, Any]], lo: int) -> SegmentResult:
    """Verify the rows of one range (seq > lo), taking its first row's prev_hash on trust:
    the join to the previous range is checked by :func:`join_segments`."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return SegmentResult(None, None, ChainReport(True, 0, None, lo, GENESIS))
    prev = _text(first[2])
    report = verify_rows(itertools.chain((first,), rows), start_seq=int(first[0]) - 1, start_hash=prev)
    return SegmentResult(int(first[0]), prev, report)


def join_segments(results: Iterable[SegmentResult], *, start_seq: int = 0, start_hash: str = GENESIS) -> ChainReport:
    """The serial verdict from per-range verdicts, ranges in seq order."""
    expected, head, checked, first = start_seq + 1, start_hash, 0, None
    for part in results:
        if part.first_seq is None:
            continue  # an empty range: the next range's first row must still be ``expected``
        first = part.first_seq if first is None else first
        if part.first_seq != expected:
            seq = part.first_seq
            reason = (f"gap: expected seq {expected}, found {seq} (rows {expected}..{seq - 1} missing)"
                      if seq > expected else f"sequence out of order: seq {seq} after {expected - 1}")
            return ChainReport(False, checked, first, expected - 1, head, expected, reason)
        if part.first_prev != head:
            return ChainReport(False, checked, first, expected - 1, head, expected,
                               f"link mismatch: prev_hash {part.first_prev[:16]}... is not the hash of seq "
                               f"{expected - 1} ({head[:16]}...)")
        report = part.report
        if not report.intact:
            report.checked += checked
            report.first_seq = first
            return report
        expected, head, checked = report.last_seq + 1, report.head_hash, checked + report.checked
    return ChainReport(True, checked, first, expected - 1, head)


def split(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """(lo, hi] cut into ``parts`` contiguous ranges (a, b]."""
    size = max(1, -(-(hi - lo) // parts))
    return [(a, min(a + size, hi)) for a in range(lo, hi, size)]


def _segment_worker(connect: Callable[[], Any], database: str, lo: int, hi: int, out: Any) -> None:
    try:
        conn = connect()
        try:
            out.send(verify_segment(stream_rows(conn, lo, 5000, database=database, end_seq=hi, binary=True), lo))
        finally:
            conn.close()
    except BaseException as exc:
        out.send(f"{type(exc).__name__}: {exc}")


def verify_segments(connect: Callable[[], Any], lo: int, hi: int, *, workers: int,
                    database: str = DATABASE) -> list[SegmentResult]:
    """Verify (lo, hi] in ``workers`` forked processes, each on its own connection from
    ``connect`` (called in the child). A worker that fails raises here: never a verdict."""
    ctx = multiprocessing.get_context("fork")
    jobs = []
    for a, b in split(lo, hi, workers):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_segment_worker, args=(connect, database, a, b, send), daemon=True)
        proc.start()
        send.close()
        jobs.append((proc, receive, (a, b)))
    results: list[SegmentResult] = []
    failures = []
    for proc, receive, (a, b) in jobs:
        try:
            got = receive.recv()
        except EOFError:
            got = f"the worker died (exit code {proc.join() or proc.exitcode})"
        proc.join()
        if isinstance(got, SegmentResult):
            results.append(got)
        else:
            failures.append(f"seq {a + 1}..{b}: {got}")
    if failures:
        raise RuntimeError("segment verification could not run: " + "; ".join(failures))
    return results


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


def read_head(conn: Any, database: str = DATABASE) -> tuple[int, str] | None:
    with conn.cursor() as cur:
        cur.execute(head_query(database))
        row = cur.fetchone()
    return (int(row[0]), _text(row[1])) if row else None


def new_events(conn: pymysql.connections.Connection, database: str, after_seq: int) -> list[dict[str, Any]]:
    """The events after ``after_seq`` as recorded (the stored payload, parsed), in seq order;
    for a probe's own few events (AUD-1), not for whole chains (use stream_rows)."""
    with conn.cursor() as cur:
        cur.execute(row_query(database), (after_seq,))
        return [json.loads(payload) for _, payload, _, _ in cur.fetchall()]


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


def verify_database(conn: Any, *, start_seq: int = 0, start_hash: str = GENESIS, database: str = DATABASE,
                    connect: Callable[[], Any] | None = None, workers: int = 1,
                    min_segment_rows: int = MIN_SEGMENT_ROWS) -> ChainReport:
    """Verify the stored chain and that the head row points at its last event, all in one
    consistent snapshot (the connection, pymysql or mysqlclient, must not be inside a
    transaction). With ``connect`` (a factory of new connections) and ``workers`` > 1, a
    long chain is verified in seq ranges by that many processes (see verify_segments)."""
    with chain_snapshot(conn):
        if start_seq:
            with conn.cursor() as cur:
                cur.execute(f"SELECT curr_hash FROM {quote_name(database)}.audit_events WHERE seq = %s", (start_seq,))
                row = cur.fetchone()
            if row is None or _text(row[0]) != start_hash:
                found = "no such row" if row is None else f"stored {_text(row[0])[:16]}..."
                return ChainReport(False, 0, None, start_seq, start_hash, start_seq,
                                   "the trusted starting point does not match the database at seq "
                                   f"{start_seq} ({found})")
        last = None
        if connect is not None and workers > 1:
            with conn.cursor() as cur:
                cur.execute(f"SELECT MAX(seq) FROM {quote_name(database)}.audit_events")
                (last,) = cur.fetchone()
        if last is not None and int(last) - start_seq >= workers * min_segment_rows:
            parts = verify_segments(connect, start_seq, int(last), workers=workers, database=database)
            report = join_segments(parts, start_seq=start_seq, start_hash=start_hash)
        else:
            report = verify_rows(stream_rows(conn, start_seq, 5000, database=database, binary=True),
                                 start_seq=start_seq, start_hash=start_hash)
        return check_head(report, read_head(conn, database))


def open_reader(target: Any, role: str) -> Any:
    """A connection as ``role`` for bulk reads: mysqlclient where it can log in with the same
    checks as ztm.db.connect (see ztm.db.connect_c), else pymysql."""
    from ztm.db import connect, connect_c

    identity = target.roles[role]
    fast = connect_c(target, identity)
    return fast if fast is not None else connect(target, identity)


def verify_target(target: Any, role: str, *, start_seq: int = 0, start_hash: str = GENESIS,
                  workers: int | None = None, conn: Any = None) -> tuple[ChainReport, str]:
    """Verify the target's chain as ``role`` at the driver's limit (open_reader), seq ranges
    in parallel on a long chain. Returns the report and the driver used. A ``conn`` given
    (from open_reader) is used and closed."""
    conn = conn if conn is not None else open_reader(target, role)
    driver = "pymysql" if isinstance(conn, pymysql.connections.Connection) else "mysqlclient"
    try:
        report = verify_database(conn, start_seq=start_seq, start_hash=start_hash, database=target.database,
                                 connect=lambda: open_reader(target, role), workers=workers or os.cpu_count() or 1)
    finally:
        conn.close()
    return report, driver


def export_rows(conn: pymysql.connections.Connection, out: Path, database: str = DATABASE) -> int:
    """Write the chain as JSON lines (seq, payload, prev_hash, curr_hash) for offline checks,
    then a head trailer {"head": {seq, head_hash}, "rows": n} read in the same snapshot, so an
    offline export's head can be matched to a signed anchor (and an export cut short shows)."""
    count = 0
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute(head_query(database))
        head = cur.fetchone()
    with open(out, "w", encoding="utf-8") as handle:
        for seq, payload, prev_hash, curr_hash in stream_rows(conn, database=database):
            handle.write(json.dumps({"seq": seq, "payload": payload, "prev_hash": prev_hash,
                                     "curr_hash": curr_hash}, ensure_ascii=False) + "\n")
            count += 1
        if head is not None:
            handle.write(json.dumps({"head": {"seq": head[0], "head_hash": head[1]}, "rows": count}) + "\n")
    conn.commit()
    return count


class DumpReader:
    """The rows of a JSON-lines dump from 'ztm audit export', streamed, and its head trailer.

    An export ends with {"head": {"seq", "head_hash"}, "rows": n}; a dump without it, with
    rows after it, or whose trailer disagrees with its rows was cut short or edited.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.trailer: dict[str, Any] | None = None
        self.rows_read = 0
        self.after_trailer = False
        self.last: tuple[int, str] | None = None

    def rows(self, start_seq: int = 0) -> Iterator[tuple[int, str, str, str]]:
        try:
            handle = open(self.path, encoding="utf-8", errors="strict")  # noqa: SIM115  (closed below)
        except OSError as exc:
            raise UserError(f"cannot read audit dump {self.path}: {exc.strerror}", EXIT_UNUSABLE) from None
        with handle:
            for number, line in enumerate(_lines(handle, self.path), 1):
                row = _parse_line(line, number, self.path)
                if self.trailer is not None:
                    self.after_trailer = True
                    continue
                if isinstance(row.get("head"), dict) and "seq" not in row:
                    self.trailer = row
                    continue
                item = _audit_row(row, number, self.path)
                self.rows_read += 1
                self.last = (item[0], item[3])
                if item[0] >= start_seq:
                    yield item

    def check(self, report: ChainReport, start_seq: int, start_hash: str) -> ChainReport:
        """A dump verifies only whole: trailer present, last, and equal to its last row; and
        a trusted starting point must be one of its rows with that hash."""
        problem = None
        head = self.trailer.get("head") if self.trailer else None
        if self.trailer is None:
            problem = "the dump has no head trailer: it was cut short or is not an export of 'ztm audit export'"
        elif self.after_trailer:
            problem = "rows follow the head trailer: the dump was edited"
        elif (not isinstance(head, dict) or head.get("seq") != (self.last[0] if self.last else 0)
              or head.get("head_hash") != (self.last[1] if self.last else GENESIS)
              or self.trailer.get("rows") != self.rows_read):
            problem = (f"the head trailer ({head}, {self.trailer.get('rows')} rows) does not match the dump's last "
                       f"row ({self.last}) and row count ({self.rows_read}): cut short or edited")
        if problem and report.intact:
            report.intact, report.reason = False, problem
        return report


def _lines(handle, path: Path) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: not an audit dump", EXIT_UNUSABLE) from None


def _parse_line(line: str, number: int, path: Path) -> dict[str, Any]:
    try:
        row = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        row = None
    if not isinstance(row, dict):
        raise UserError(f"{path}: line {number} is not an audit row (JSON with seq, payload, prev_hash, curr_hash)",
                        EXIT_UNUSABLE)
    return row


def _no_constant(name: str) -> None:
    raise ValueError(name)


def _audit_row(row: dict[str, Any], number: int, path: Path) -> tuple[int, str, str, str]:
    seq, payload, prev_hash, curr_hash = (row.get(k) for k in ("seq", "payload", "prev_hash", "curr_hash"))
    if (type(seq) is not int or seq < 1 or not isinstance(payload, str) or not isinstance(prev_hash, str)
            or not isinstance(curr_hash, str)):
        raise UserError(f"{path}: line {number} is not an audit row (JSON with seq, payload, prev_hash, curr_hash)",
                        EXIT_UNUSABLE)
    return seq, payload, prev_hash, curr_hash


def verify_dump(path: Path, *, start_seq: int = 0, start_hash: str = GENESIS) -> ChainReport:
    """Verify an export offline: every link after the trusted start, the start row itself
    (when start_seq > 0 it must be in the dump with curr_hash = start_hash), and the trailer."""
    reader = DumpReader(path)
    rows = reader.rows(start_seq)
    if start_seq:
        first = next(rows, None)
        if first is None or first[0] != start_seq or first[3] != start_hash:
            found = "no such row" if first is None or first[0] != start_seq else f"stored {first[3][:16]}..."
            for _ in rows:  # read to the end: the trailer is still checked
                pass
            report = ChainReport(False, 0, None, start_seq, start_hash, start_seq,
                                 f"the trusted starting point seq {start_seq} is not in the dump as given ({found})")
            return reader.check(report, start_seq, start_hash)
    report = verify_rows(rows, start_seq=start_seq, start_hash=start_hash)
    for _ in rows:  # a broken chain stops early; the trailer is still read
        pass
    return reader.check(report, start_seq, start_hash)


def dump_rows(path: Path, start_seq: int = 0) -> Iterator[tuple[int, str, str, str]]:
    """Rows after ``start_seq`` of a dump (no completeness check: see verify_dump)."""
    for row in DumpReader(path).rows(start_seq):
        if row[0] > start_seq:
            yield row
