"""Verify the audit trail: 64 hash chains ("lanes"), provision/sql/020_audit.sql documents it.

    curr_hash(l, n) = hex(SHA-256(prev_hash(l, n) || payload(l, n)))   (UTF-8 bytes)
    prev_hash(l, n) = curr_hash(l, n-1),  prev_hash(l, 1) = "0" * 64

Every lane is verified on its own (its seq, links and hashes, and that its head row points
at its last event); a lane's head row missing, or rows in a lane that has none, is a break.
The trail's state is the (seq, hash) of every lane, bound together by ``heads_digest``.

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
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from ztm.data_plane import DATABASE
from ztm.db import quote_name
from ztm.errors import UserError

GENESIS = "0" * 64
LANES = 64  # fixed at install (provision/sql/020_audit.sql): one head row per lane
Start = dict[int, tuple[int, str]]  # lane -> a trusted (seq, curr_hash) to verify from


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import MySQLdb
    except ImportError:
        return (pymysql.MySQLError,)
    return (pymysql.MySQLError, MySQLdb.MySQLError)


DRIVER_ERRORS = _driver_errors()  # what either driver raises for a server or connection error


def lane_of(tenant: str | None) -> int:
    """The lane of a tenant's events, as audit_append computes it (CRC32 is the same IEEE CRC)."""
    return 0 if tenant is None else zlib.crc32(tenant.encode("ascii")) % LANES


def row_query(database: str = DATABASE) -> str:
    """One lane's rows after a seq, as str."""
    return (f"SELECT seq, payload, prev_hash, curr_hash FROM {quote_name(database)}.audit_events "
            "WHERE lane = %s AND seq > %s ORDER BY seq")


def head_query(database: str = DATABASE) -> str:
    return f"SELECT lane, seq, head_hash FROM {quote_name(database)}.audit_chain_head ORDER BY lane"


def heads_digest(heads: dict[int, tuple[int, str]]) -> str:
    """One SHA-256 binding every lane's (seq, hash): lines "lane seq hash\n" in lane order."""
    return hashlib.sha256("".join(f"{lane} {seq} {h}\n" for lane, (seq, h) in sorted(heads.items()))
                          .encode("ascii")).hexdigest()


def genesis_heads() -> dict[int, tuple[int, str]]:
    return {lane: (0, GENESIS) for lane in range(LANES)}


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
    lane: int = 0

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


@dataclass
class TrailReport:
    """Every lane's verdict (lane order) and what concerns the trail as a whole."""
    lanes: list[ChainReport]
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems and all(r.intact for r in self.lanes)

    @property
    def checked(self) -> int:
        return sum(r.checked for r in self.lanes)

    @property
    def broken(self) -> list[ChainReport]:
        return [r for r in self.lanes if not r.intact]

    @property
    def reason(self) -> str | None:
        return None if self.intact else self.describe()

    def heads(self) -> dict[int, tuple[int, str]]:
        return {r.lane: (r.last_seq, r.head_hash) for r in self.lanes}

    def lane(self, lane: int) -> ChainReport:
        return next(r for r in self.lanes if r.lane == lane)

    def to_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "checked": self.checked, "problems": self.problems,
                "heads_digest": heads_digest(self.heads()),
                "lanes": {str(r.lane): {k: v for k, v in r.to_dict().items() if k != "lane"} for r in self.lanes}}

    def describe(self) -> str:
        if self.intact:
            used = sum(1 for r in self.lanes if r.last_seq)
            return (f"audit trail intact: {self.checked} events checked in {len(self.lanes)} lanes ({used} holding "
                    f"events), heads digest {heads_digest(self.heads())}")
        parts = self.problems + [f"lane {r.lane}: {r.describe()}" for r in self.broken]
        return "audit trail broken: " + "; ".join(parts)


def verify_lanes(rows: Iterable[tuple[int, int, Any, Any, Any]], *, start: Start | None = None,
                 lanes: Iterable[int] = range(LANES)) -> TrailReport:
    """Verify rows (lane, seq, payload, prev_hash, curr_hash) in (lane, seq) order: each lane
    from its trusted start (else genesis). Every lane of ``lanes`` gets a verdict; rows of
    another lane, or of one lane in two runs (out of order), are a problem."""
    start = start or {}
    wanted = sorted(set(lanes))
    reports: dict[int, ChainReport] = {}
    problems: list[str] = []
    for lane, group in itertools.groupby(rows, key=lambda r: int(r[0])):
        if lane in reports:
            problems.append(f"rows of lane {lane} appear out of (lane, seq) order")
            continue
        if lane not in wanted:
            problems.append(f"events in lane {lane}, which is not one of the trail's {len(wanted)} lanes")
            reports[lane] = ChainReport(True, 0, None, 0, GENESIS, lane=lane)
            continue
        seq, h = start.get(lane, (0, GENESIS))
        reports[lane] = verify_rows((r[1:] for r in group), start_seq=seq, start_hash=h)
        reports[lane].lane = lane
    out = []
    for lane in wanted:
        seq, h = start.get(lane, (0, GENESIS))
        out.append(reports.get(lane) or ChainReport(True, 0, None, seq, h, lane=lane))
    return TrailReport(out, problems)


def check_heads(report: TrailReport, heads: dict[int, tuple[int, str]]) -> TrailReport:
    """Every intact lane must end where its head row says; a lane without its head row breaks."""
    for lane_report in report.lanes:
        check_head(lane_report, heads.get(lane_report.lane))
        if lane_report.reason == "the chain head row is missing":
            lane_report.reason = (f"the head row of lane {lane_report.lane} is missing (deleted, or the trail was "
                                  "installed with fewer lanes)")
    extra = sorted(set(heads) - {r.lane for r in report.lanes})
    if extra:
        report.problems.append(f"head rows for lanes {extra} beyond the trail's {len(report.lanes)} lanes")
    return report


def row_query_bytes(database: str = DATABASE) -> str:
    """The rows of one lane in (lo, hi] as bytes with either driver: the payload's stored
    UTF-8 and the hex hashes, hashed as they are (no decoding, no re-encoding per row)."""
    return (f"SELECT seq, CAST(payload AS BINARY), CAST(prev_hash AS BINARY), CAST(curr_hash AS BINARY) "
            f"FROM {quote_name(database)}.audit_events WHERE lane = %s AND seq > %s AND seq <= %s ORDER BY seq")


def trail_query(database: str = DATABASE, *, binary: bool = True) -> str:
    """Every row of the trail in (lane, seq) order (the primary key's order: one index scan)."""
    cols = ("CAST(payload AS BINARY), CAST(prev_hash AS BINARY), CAST(curr_hash AS BINARY)" if binary
            else "payload, prev_hash, curr_hash")
    return f"SELECT lane, seq, {cols} FROM {quote_name(database)}.audit_events ORDER BY lane, seq"


def _unbuffered_cursor(conn: Any) -> Any:
    """An unbuffered cursor of the connection's driver (pymysql, or mysqlclient's MySQLdb)."""
    if isinstance(conn, pymysql.connections.Connection):
        return conn.cursor(pymysql.cursors.SSCursor)
    import MySQLdb.cursors  # only a mysqlclient connection gets here

    return conn.cursor(MySQLdb.cursors.SSCursor)


def _stream(conn: Any, sql: str, args: tuple, batch: int) -> Iterator[tuple]:
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


def stream_rows(conn: Any, start_seq: int = 0, batch: int = 2000, *, database: str = DATABASE,
                end_seq: int | None = None, binary: bool = False, lane: int = 0) -> Iterator[tuple[int, Any, Any, Any]]:
    """One lane's rows (seq, payload, prev_hash, curr_hash) after ``start_seq`` (up to
    ``end_seq``) through an unbuffered cursor (constant memory); ``binary`` gives bytes
    columns (the fast path), else str."""
    if binary or end_seq is not None:
        sql, args = row_query_bytes(database), (lane, start_seq, (1 << 63) - 1 if end_seq is None else end_seq)
    else:
        sql, args = row_query(database), (lane, start_seq)
    return _stream(conn, sql, args, batch)


def stream_trail(conn: Any, batch: int = 5000, *, database: str = DATABASE,
                 binary: bool = True) -> Iterator[tuple[int, int, Any, Any, Any]]:
    """Every row (lane, seq, payload, prev_hash, curr_hash) in (lane, seq) order, streamed."""
    return _stream(conn, trail_query(database, binary=binary), (), batch)


# -- Segment-parallel verification -------------------------------------------------------------
# Each worker verifies (lane, seq range) pieces on its own connection: its lanes whole, or a
# long lane cut into seq ranges whose joins (each range's first prev_hash = the previous
# range's last curr_hash, and no seq missing between ranges) are checked here in seq order,
# so the verdict is the serial one. Rows at or below the snapshot's last seq of a lane never
# change under an intact guard, so the workers' own snapshots read the same rows.
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


Piece = tuple[int, int, int]  # (lane, lo, hi): the rows of a lane with lo < seq <= hi


def plan_pieces(ranges: dict[int, tuple[int, int]], workers: int) -> list[list[Piece]]:
    """Per worker, the pieces it verifies: every lane's (lo, hi] cut so that no piece is longer
    than an even share, then dealt out longest first to the least loaded worker."""
    total = sum(hi - lo for lo, hi in ranges.values())
    share = max(1, -(-total // workers))
    pieces = [(lane, a, b) for lane, (lo, hi) in sorted(ranges.items()) if hi > lo
              for a, b in split(lo, hi, -(-(hi - lo) // share))]
    plan: list[list[Piece]] = [[] for _ in range(workers)]
    load = [0] * workers
    for piece in sorted(pieces, key=lambda p: p[1] - p[2]):
        i = load.index(min(load))
        plan[i].append(piece)
        load[i] += piece[2] - piece[1]
    return [p for p in plan if p]


def _segment_worker(connect: Callable[[], Any], database: str, pieces: list[Piece], out: Any) -> None:
    try:
        conn = connect()
        try:
            out.send([(lane, lo, verify_segment(stream_rows(conn, lo, 5000, database=database, end_seq=hi,
                                                            binary=True, lane=lane), lo))
                      for lane, lo, hi in pieces])
        finally:
            conn.close()
    except BaseException as exc:
        out.send(f"{type(exc).__name__}: {exc}")


def verify_segments(connect: Callable[[], Any], ranges: dict[int, tuple[int, int]], *, workers: int,
                    database: str = DATABASE) -> dict[int, list[SegmentResult]]:
    """Verify each lane's (lo, hi] in ``workers`` forked processes, each on its own connection
    from ``connect`` (called in the child); per lane, its segments in seq order. A worker that
    fails raises here: never a verdict."""
    ctx = multiprocessing.get_context("fork")
    jobs = []
    for pieces in plan_pieces(ranges, workers):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_segment_worker, args=(connect, database, pieces, send), daemon=True)
        proc.start()
        send.close()
        jobs.append((proc, receive, pieces))
    found: list[tuple[int, int, SegmentResult]] = []
    failures = []
    for proc, receive, pieces in jobs:
        try:
            got = receive.recv()
        except EOFError:
            got = f"the worker died (exit code {proc.join() or proc.exitcode})"
        proc.join()
        if isinstance(got, list):
            found += got
        else:
            failures.append(", ".join(f"lane {lane} seq {lo + 1}..{hi}" for lane, lo, hi in pieces) + f": {got}")
    if failures:
        raise RuntimeError("segment verification could not run: " + "; ".join(failures))
    per_lane: dict[int, list[SegmentResult]] = {}
    for lane, _, part in sorted(found, key=lambda f: (f[0], f[1])):
        per_lane.setdefault(lane, []).append(part)
    return per_lane


@contextmanager
def chain_snapshot(conn: pymysql.connections.Connection) -> Iterator[None]:
    """Every read inside sees the trail as it was at one instant (InnoDB consistent read)."""
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the next transaction only
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    try:
        yield
    finally:
        if conn.open:
            conn.rollback()


def read_heads(conn: Any, database: str = DATABASE) -> dict[int, tuple[int, str]]:
    """Every lane's head row: lane -> (seq, head_hash)."""
    with conn.cursor() as cur:
        cur.execute(head_query(database))
        return {int(lane): (int(seq), _text(h)) for lane, seq, h in cur.fetchall()}


def new_events(conn: Any, database: str, after: dict[int, tuple[int, str]]) -> list[dict[str, Any]]:
    """The events after the heads ``after`` (lane -> (seq, hash)) as recorded (the stored
    payload, parsed), in (lane, seq) order, of the lanes whose head moved since; for a probe's
    own few events (AUD-1), not for whole trails (use stream_trail)."""
    events = []
    with conn.cursor() as cur:
        for lane, (seq, _) in sorted(read_heads(conn, database).items()):
            since = after.get(lane, (0, GENESIS))[0]
            if seq > since:
                cur.execute(row_query(database), (lane, since))
                events += [json.loads(_text(payload)) for _, payload, _, _ in cur.fetchall()]
    return events


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


def _check_start(conn: Any, database: str, start: Start) -> list[str]:
    problems = []
    with conn.cursor() as cur:
        for lane, (seq, h) in sorted(start.items()):
            if not seq:
                continue
            cur.execute(f"SELECT curr_hash FROM {quote_name(database)}.audit_events WHERE lane = %s AND seq = %s",
                        (lane, seq))
            row = cur.fetchone()
            if row is None or _text(row[0]) != h:
                found = "no such row" if row is None else f"stored {_text(row[0])[:16]}..."
                problems.append(f"the trusted starting point does not match the database at lane {lane} seq {seq} "
                                f"({found})")
    return problems


def verify_database(conn: Any, *, start: Start | None = None, database: str = DATABASE,
                    connect: Callable[[], Any] | None = None, workers: int = 1,
                    min_segment_rows: int = MIN_SEGMENT_ROWS) -> TrailReport:
    """Verify every lane of the stored trail and that each lane's head row points at its last
    event, all in one consistent snapshot (the connection, pymysql or mysqlclient, must not be
    inside a transaction). ``start``: lane -> trusted (seq, hash) to verify from. With
    ``connect`` (a factory of new connections) and ``workers`` > 1, a long trail is verified
    in (lane, seq range) pieces by that many processes (see verify_segments)."""
    start = start or {}
    with chain_snapshot(conn):
        problems = _check_start(conn, database, start)
        if problems:
            return TrailReport([ChainReport(True, 0, None, 0, GENESIS, lane=lane) for lane in range(LANES)], problems)
        heads = read_heads(conn, database)
        lasts: dict[int, int] = {}
        if connect is not None and workers > 1:
            with conn.cursor() as cur:
                cur.execute(f"SELECT lane, MAX(seq) FROM {quote_name(database)}.audit_events GROUP BY lane")
                lasts = {int(lane): int(last) for lane, last in cur.fetchall()}
        ranges = {lane: (start.get(lane, (0, GENESIS))[0], last) for lane, last in lasts.items()}
        if sum(hi - lo for lo, hi in ranges.values()) >= workers * min_segment_rows:
            parts = verify_segments(connect, ranges, workers=workers, database=database)
            lanes = []
            extra = sorted(set(parts) - set(range(LANES)))
            for lane in range(LANES):
                seq, h = start.get(lane, (0, GENESIS))
                joined = join_segments(parts.get(lane, []), start_seq=seq, start_hash=h)
                joined.lane = lane
                lanes.append(joined)
            report = TrailReport(lanes, [f"events in lane {lane}, which is not one of the trail's {LANES} lanes"
                                         for lane in extra])
        else:
            stream = stream_trail(conn, database=database)
            try:
                rows = (r for r in stream if r[1] > start.get(r[0], (0, GENESIS))[0]) if start else stream
                report = verify_lanes(rows, start=start)
            finally:
                stream.close()  # a broken lane stops early: the unbuffered result is drained here
        return check_heads(report, heads)


def open_reader(target: Any, role: str) -> Any:
    """A connection as ``role`` for bulk reads: mysqlclient where it can log in with the same
    checks as ztm.db.connect (see ztm.db.connect_c), else pymysql."""
    from ztm.db import connect, connect_c

    identity = target.roles[role]
    fast = connect_c(target, identity)
    return fast if fast is not None else connect(target, identity)


def verify_target(target: Any, role: str, *, start: Start | None = None,
                  workers: int | None = None, conn: Any = None) -> tuple[TrailReport, str]:
    """Verify the target's trail as ``role`` at the driver's limit (open_reader), pieces in
    parallel on a long trail. Returns the report and the driver used. A ``conn`` given (from
    open_reader) is used and closed."""
    conn = conn if conn is not None else open_reader(target, role)
    driver = "pymysql" if isinstance(conn, pymysql.connections.Connection) else "mysqlclient"
    try:
        report = verify_database(conn, start=start, database=target.database,
                                 connect=lambda: open_reader(target, role), workers=workers or os.cpu_count() or 1)
    finally:
        conn.close()
    return report, driver


# -- Export: JSON lines {"lane", "seq", "payload", "prev_hash", "curr_hash"} in (lane, seq) order,
# then the trailer {"heads": {"<lane>": {"seq", "head_hash"}}, "heads_digest", "lanes", "rows"}.
OLD_SHAPE = ("a single-chain audit export (written before the trail had lanes): this version verifies only "
             "lane exports; export the trail again")


def export_rows(conn: pymysql.connections.Connection, out: Path, database: str = DATABASE) -> int:
    """Write the trail as JSON lines for offline checks, then a trailer with every lane's head
    read in the same snapshot, so an offline export can be matched to a signed anchor (and an
    export cut short shows)."""
    count = 0
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    heads = read_heads(conn, database)
    with open(out, "w", encoding="utf-8") as handle:
        for lane, seq, payload, prev_hash, curr_hash in stream_trail(conn, database=database, binary=False):
            handle.write(json.dumps({"lane": lane, "seq": seq, "payload": payload, "prev_hash": prev_hash,
                                     "curr_hash": curr_hash}, ensure_ascii=False) + "\n")
            count += 1
        handle.write(json.dumps({"heads": {str(lane): {"seq": s, "head_hash": h} for lane, (s, h) in heads.items()},
                                 "heads_digest": heads_digest(heads), "lanes": len(heads), "rows": count}) + "\n")
    conn.commit()
    return count


class DumpReader:
    """The rows of a JSON-lines dump from 'ztm audit export', streamed, and its head trailer.

    An export ends with {"heads": {...}, "rows": n, ...}; a dump without it, with rows after
    it, or whose trailer disagrees with its rows was cut short or edited. A dump of the
    single-chain shape (rows without a lane, a {"head": ...} trailer) is refused (OLD_SHAPE).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.trailer: dict[str, Any] | None = None
        self.rows_read = 0
        self.after_trailer = False
        self.last: dict[int, tuple[int, str]] = {}

    def rows(self) -> Iterator[tuple[int, int, str, str, str]]:
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
                if "seq" not in row and (isinstance(row.get("heads"), dict) or isinstance(row.get("head"), dict)):
                    if "heads" not in row:
                        raise UserError(f"{self.path}: {OLD_SHAPE}", EXIT_UNUSABLE)
                    self.trailer = row
                    continue
                item = _audit_row(row, number, self.path)
                self.rows_read += 1
                self.last[item[0]] = (item[1], item[4])
                yield item

    def check(self, report: TrailReport) -> TrailReport:
        """A dump verifies only whole: trailer present, last, and equal to its last row per lane."""
        problem = None
        heads = self.trailer.get("heads") if self.trailer else None
        mine = {str(lane): {"seq": s, "head_hash": h} for lane, (s, h) in self.last.items()}
        theirs = ({k: v for k, v in heads.items() if not (isinstance(v, dict) and v.get("seq") == 0)}
                  if isinstance(heads, dict) else None)
        if self.trailer is None:
            problem = "the dump has no head trailer: it was cut short or is not an export of 'ztm audit export'"
        elif self.after_trailer:
            problem = "rows follow the head trailer: the dump was edited"
        elif theirs != mine or self.trailer.get("rows") != self.rows_read:
            differ = sorted(int(k) for k in set(mine) | set(theirs or {}) if (theirs or {}).get(k) != mine.get(k))
            problem = (f"the head trailer ({self.trailer.get('rows')} rows) does not match the dump's rows "
                       f"({self.rows_read}; lanes differing: {differ}): cut short or edited")
        elif isinstance(heads, dict) and sorted(heads, key=int) != [str(lane) for lane in range(LANES)]:
            problem = f"the head trailer names lanes {sorted(heads, key=int)}, not the trail's {LANES}: a lane dropped"
        if problem:
            report.problems.append(problem)
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
        raise UserError(f"{path}: line {number} is not an audit row (JSON with lane, seq, payload, prev_hash, "
                        "curr_hash)", EXIT_UNUSABLE)
    return row


def _no_constant(name: str) -> None:
    raise ValueError(name)


def _audit_row(row: dict[str, Any], number: int, path: Path) -> tuple[int, int, str, str, str]:
    if "lane" not in row and "seq" in row:
        raise UserError(f"{path}: {OLD_SHAPE}", EXIT_UNUSABLE)
    lane, seq, payload, prev_hash, curr_hash = (row.get(k) for k in ("lane", "seq", "payload", "prev_hash",
                                                                     "curr_hash"))
    if (type(lane) is not int or lane < 0 or type(seq) is not int or seq < 1 or not isinstance(payload, str)
            or not isinstance(prev_hash, str) or not isinstance(curr_hash, str)):
        raise UserError(f"{path}: line {number} is not an audit row (JSON with lane, seq, payload, prev_hash, "
                        "curr_hash)", EXIT_UNUSABLE)
    return lane, seq, payload, prev_hash, curr_hash


def verify_dump(path: Path, *, start: Start | None = None) -> TrailReport:
    """Verify an export offline: every lane's links after its trusted start (whose row must be
    in the dump with that hash), and the trailer."""
    start = {lane: s for lane, s in (start or {}).items() if s[0]}
    reader = DumpReader(path)
    seen: dict[int, str] = {}

    def after_start(rows: Iterator[tuple[int, int, str, str, str]]) -> Iterator[tuple[int, int, str, str, str]]:
        for row in rows:
            lane, seq = row[0], row[1]
            if lane in start and seq <= start[lane][0]:
                if seq == start[lane][0]:
                    seen[lane] = row[4]
                continue
            yield row

    rows = after_start(reader.rows())
    report = verify_lanes(rows, start=start)
    for _ in rows:  # a broken chain stops early; the trailer is still read
        pass
    for lane, (seq, h) in sorted(start.items()):
        if seen.get(lane) != h:
            found = "no such row" if lane not in seen else f"stored {seen[lane][:16]}..."
            report.problems.append(f"the trusted starting point lane {lane} seq {seq} is not in the dump as given "
                                   f"({found})")
    return reader.check(report)


def dump_rows(path: Path) -> Iterator[tuple[int, int, str, str, str]]:
    """The rows of a dump, (lane, seq, payload, prev_hash, curr_hash) (no completeness check:
    see verify_dump)."""
    yield from DumpReader(path).rows()
