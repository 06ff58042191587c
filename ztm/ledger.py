"""Ledger reconciliation: the data equals the replay of its audit trail (ZTM-AUD-4).

The hash chains prove the trail was not rewritten; this proves the *data* is what the trail
says. In one consistent snapshot it streams the trail lane by lane (recomputing every link,
so only authentic events are replayed; a key's events are all in the lane of its tenant,
in their order, as audit_append refuses a row moving to another tenant) and then every
audited table, and shows:

- replay: each key's history is INSERT, UPDATE*, DELETE, (INSERT ...) and every event's
  before-image equals the after-image the previous event of that key left (a change made
  without an event *between* two audited events shows here, even if it was later overwritten);
- state: every current row equals the last after-image of its key, column by column, and no
  column exists that the trail does not record; every key whose last event is a DELETE is
  absent; no row exists without events; every key the trail leaves alive is present;
- scope: nothing in the chain refers to a table the schema no longer has;
- lanes: a key whose events are in two lanes (a key deleted in one tenant and inserted again
  in another: no order between lanes is recorded) is named, not replayed across lanes.

What it cannot see: a change made and reverted between two reads of a row with no event in
between leaves data and trail equal again; that is what the anchors' definition digests and
the triggers' guards are for.

Memory is constant in the number of events and rows: the per-key replay state lives in an
on-disk SQLite index in a private temporary folder, never in a dict of the whole table.
Findings name table, key and column, and never a value (columns may hold ciphertext or PII).

Value rendering follows the triggers' documented image format (provision/sql/040_triggers.sql):
binary as upper-case hex, times as ISO 8601 with microseconds, numbers as JSON numbers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from ztm.audit_chain import GENESIS, LANES, chain_snapshot, read_heads, stream_trail

# Tables of the trail itself and of live sessions: not data, not reconciled.
NOT_DATA_TABLES = frozenset({"audit_events", "audit_chain_head", "tenant_context"})
EXAMPLES_PER_KIND = 5
BATCH = 5000


@dataclass(frozen=True)
class Finding:
    kind: str        # e.g. "row-differs", "row-without-events", "deleted-row-present"
    table: str
    key: str | None
    detail: str      # names columns and seq numbers, never values

    def describe(self) -> str:
        where = f"{self.table}[{self.key}]" if self.key is not None else self.table
        return f"{where}: {self.detail}"


@dataclass
class LedgerReport:
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    heads: dict[int, tuple[int, str]] | None = None
    chain_error: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[Finding] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.chain_error is None and not self.counts

    def add(self, finding: Finding) -> None:
        kind = f"{finding.kind} in {finding.table}"
        self.counts[kind] += 1
        if self.counts[kind] <= EXAMPLES_PER_KIND:
            self.examples.append(finding)

    def describe(self) -> str:
        if self.chain_error:
            return f"cannot reconcile: {self.chain_error}"
        if self.equal:
            total = sum(self.rows.values())
            return (f"the data equals its audit trail: {total} rows in {len(self.rows)} tables match the replay "
                    f"of {self.events} events")
        summary = "; ".join(f"{n} x {kind}" for kind, n in sorted(self.counts.items()))
        lines = [f"the data differs from its audit trail ({summary}):"]
        lines += [f"  {f.describe()}" for f in self.examples]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"equal": self.equal, "events": self.events, "rows": self.rows,
                "heads": ({str(lane): {"seq": seq, "head_hash": h} for lane, (seq, h) in self.heads.items()}
                          if self.heads else None),
                "chain_error": self.chain_error, "finding_counts": dict(self.counts),
                "examples": [asdict(f) for f in self.examples]}


def render(value: Any) -> Any:
    """A column value as the audit triggers render it in an image (JSON-comparable)."""
    if isinstance(value, bytes | bytearray):
        return value.hex().upper()
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def same(image_value: Any, live_value: Any) -> bool:
    rendered = render(live_value)
    if isinstance(rendered, Decimal | int) and isinstance(image_value, Decimal | int):
        return Decimal(rendered) == Decimal(image_value)
    if isinstance(rendered, str) and isinstance(image_value, str) and rendered != image_value:
        # Times recorded in UTC carry a zone marker; compare the instant, not the spelling.
        return image_value.endswith("Z") and image_value[:-1] == rendered
    return rendered == image_value


def differing_columns(image: dict[str, Any], row: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(columns whose values differ, columns the trail does not record, recorded columns gone)."""
    differ = [c for c in image if c in row and not same(image[c], row[c])]
    unrecorded = [c for c in row if c not in image]
    gone = [c for c in image if c not in row]
    return differ, unrecorded, gone


def audited_tables(conn: pymysql.connections.Connection, database: str) -> dict[str, list[str]]:
    """Every base table of the schema that holds data, with its primary-key columns in order."""
    with conn.cursor() as cur:
        cur.execute("SELECT t.TABLE_NAME, k.COLUMN_NAME FROM information_schema.TABLES t "
                    "LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.TABLE_SCHEMA = t.TABLE_SCHEMA "
                    "AND k.TABLE_NAME = t.TABLE_NAME AND k.CONSTRAINT_NAME = 'PRIMARY' "
                    "WHERE t.TABLE_SCHEMA = %s AND t.TABLE_TYPE = 'BASE TABLE' "
                    "ORDER BY t.TABLE_NAME, k.ORDINAL_POSITION", (database,))
        tables: dict[str, list[str]] = {}
        for table, column in cur.fetchall():
            if table not in NOT_DATA_TABLES:
                tables.setdefault(table, [])
                if column is not None:
                    tables[table].append(column)
    return tables


class ReplayIndex:
    """Per-(table, key) replay state: last op, last seq, last after-image.

    Recently touched keys stay in a bounded in-memory map (most histories touch a key again
    soon: an INSERT and its first UPDATE); the map spills to an on-disk SQLite table, so memory
    is bounded whatever the number of keys. Images are pickled: exact (Decimal stays Decimal),
    written and read only by this process in its private temporary folder.
    """

    def __init__(self, folder: Path, cache_keys: int = 10_000) -> None:
        self.db = sqlite3.connect(folder / "replay.sqlite", isolation_level=None)
        self.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -16384;"
                              "CREATE TABLE state (tbl TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL, "
                              "seq INTEGER NOT NULL, lane INTEGER NOT NULL, after BLOB, PRIMARY KEY (tbl, key)) "
                              "WITHOUT ROWID;")
        self.db.execute("BEGIN")
        self.cache: dict[tuple[str, str], State] = {}
        self.cache_keys = cache_keys

    def get(self, table: str, key: str) -> State | None:
        found = self.cache.get((table, key))
        if found is not None:
            return found
        row = self.db.execute("SELECT op, seq, after, lane FROM state WHERE tbl = ? AND key = ?",
                              (table, key)).fetchone()
        return State(row[0], row[1], pickle.loads(row[2]) if row[2] is not None else None, row[3]) if row else None

    def put(self, table: str, key: str, state: State) -> None:
        self.cache[(table, key)] = state
        if len(self.cache) >= self.cache_keys:
            self.flush()

    def flush(self) -> None:
        self.db.executemany(
            "INSERT INTO state (tbl, key, op, seq, lane, after) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tbl, key) "
            "DO UPDATE SET op = excluded.op, seq = excluded.seq, lane = excluded.lane, after = excluded.after",
            ((t, k, s.op, s.seq, s.lane, pickle.dumps(s.after) if s.after is not None else None)
             for (t, k), s in self.cache.items()))
        self.cache.clear()

    def in_key_order(self, table: str) -> Iterator[tuple[str, State]]:
        """Every key of ``table`` with its state, in code-point (UTF-8 byte) order of the key."""
        self.flush()
        for key, op, seq, after, lane in self.db.execute("SELECT key, op, seq, after, lane FROM state WHERE tbl = ? "
                                                         "ORDER BY key", (table,)):
            yield key, State(op, seq, pickle.loads(after) if after is not None else None, lane)

    def tables(self) -> list[str]:
        self.flush()
        return [t for (t,) in self.db.execute("SELECT DISTINCT tbl FROM state")]

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True)
class State:
    op: str
    seq: int
    after: dict[str, Any] | None
    lane: int = 0


_DECODER = json.JSONDecoder(parse_float=Decimal)


def replay_event(index: ReplayIndex, report: LedgerReport, tables: dict[str, list[str]],
                  seq: int, event: dict[str, Any], missing_tables: set[str], lane: int = 0) -> None:
    table, op, key = event.get("table"), event.get("op"), event.get("key")
    if not isinstance(table, str) or op not in ("INSERT", "UPDATE", "DELETE") or key is None:
        report.add(Finding("malformed-event", str(table), None, f"seq {seq} lacks table, op or key"))
        return
    key = str(key)
    if table not in tables:
        if table not in missing_tables:
            missing_tables.add(table)
            report.add(Finding("trail-table-not-in-schema", table, None,
                               f"the trail records changes of {table} (first at seq {seq}) but the schema has no "
                               "such data table the assessing account can read (dropped, renamed, or its "
                               "SELECT revoked): it cannot be reconciled"))
        return
    prior = index.get(table, key)
    if prior is not None and prior.lane != lane:
        report.add(Finding("key-in-two-lanes", table, key,
                           f"events in lane {prior.lane} (last seq {prior.seq}) and lane {lane} (seq {seq}): the key "
                           "moved to another tenant; no order between lanes is recorded, so it is not replayed"))
        index.put(table, key, State(op, seq, None, lane))
        return
    alive = prior is not None and prior.op != "DELETE"
    if op == "INSERT" and alive:
        report.add(Finding("insert-over-live-key", table, key,
                           f"seq {seq} INSERT of a key the trail still holds (last {prior.op} at seq {prior.seq}): "
                           "it was deleted without an event"))
    elif op in ("UPDATE", "DELETE"):
        if not alive:
            report.add(Finding("change-of-unrecorded-row", table, key,
                               f"seq {seq} {op} of a key the trail has no live row for: it was inserted without "
                               "an event"))
        else:
            before, last_after = event.get("before"), prior.after
            if isinstance(before, dict) and isinstance(last_after, dict):
                changed = sorted(c for c in set(before) | set(last_after)
                                 if c not in before or c not in last_after or not _image_equal(before[c],
                                                                                               last_after[c]))
                if changed:
                    report.add(Finding("changed-between-events", table, key,
                                       f"columns {', '.join(changed)} changed without an event between seq "
                                       f"{prior.seq} and seq {seq}"))
    after = event.get("after")
    index.put(table, key, State(op, seq, after if op != "DELETE" and isinstance(after, dict) else None, lane))


def _image_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal | int) and isinstance(b, Decimal | int):
        return Decimal(a) == Decimal(b)
    return a == b


def _stream(conn: pymysql.connections.Connection, query: str, args: tuple = ()) -> Iterator[tuple]:
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(query, args)
        while chunk := cur.fetchmany(BATCH):
            yield from chunk


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _replay_chain(conn: pymysql.connections.Connection, database: str, index: ReplayIndex,
                  report: LedgerReport, tables: dict[str, list[str]]) -> None:
    # The trail's fast row stream (bytes, hashed as stored), lane after lane, each in seq order;
    # every link is still verified.
    ends: dict[int, tuple[int, bytes]] = {}
    lane, expected, head, missing_tables = -1, 1, GENESIS.encode("ascii"), set[str]()
    sha256 = hashlib.sha256
    rows = stream_trail(conn, BATCH, database=database, binary=True)
    try:
        for row_lane, seq, payload, prev_hash, curr_hash in rows:
            if row_lane != lane:
                if row_lane in ends or row_lane >= LANES:
                    report.chain_error = (f"the audit trail holds rows of lane {row_lane} out of order or beyond its "
                                          "lanes")
                    return
                lane, expected, head = row_lane, 1, GENESIS.encode("ascii")
            if seq != expected or prev_hash != head or sha256(prev_hash + payload).hexdigest().encode() != curr_hash:
                report.chain_error = (f"lane {lane} of the audit trail is broken at seq {expected} (see ZTM-AUD-2): "
                                      "only an intact trail can be replayed")
                return
            head, expected = curr_hash, expected + 1
            ends[lane] = (seq, curr_hash)
            report.events += 1
            try:
                event = _DECODER.decode(payload.decode("utf-8"))
            except ValueError:
                report.add(Finding("malformed-event", "audit_events", f"{lane}/{seq}", "payload is not JSON"))
                continue
            replay_event(index, report, tables, seq, event, missing_tables, lane)
    finally:
        rows.close()
    report.heads = read_heads(conn, database)
    last = {lane: (seq, h.decode("ascii")) for lane, (seq, h) in ends.items()}
    moved = sorted(lane for lane in set(report.heads) | set(range(LANES))
                   if report.heads.get(lane) != last.get(lane, (0, GENESIS)))
    if moved:
        report.chain_error = (f"the head rows of lanes {moved} do not point at the last event of their lane "
                              "(see ZTM-AUD-2)")


def _live_rows(conn: pymysql.connections.Connection, database: str, table: str,
               key_columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, row) in the byte order of the key as the triggers spell it (parts joined by '/')."""
    key = "CONCAT_WS('/', " + ", ".join(_quote(c) for c in key_columns) + ")"
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(f"SELECT CAST({key} AS BINARY) AS ztm_ledger_key, t.* FROM {_quote(database)}.{_quote(table)} t "
                    "ORDER BY ztm_ledger_key")
        columns = [d[0] for d in cur.description][1:]
        while chunk := cur.fetchmany(BATCH):
            for values in chunk:
                yield values[0].decode("utf-8", "surrogateescape"), dict(zip(columns, values[1:], strict=True))


_END = object()


def _compare_table(conn: pymysql.connections.Connection, database: str, table: str, key_columns: list[str],
                   index: ReplayIndex, report: LedgerReport) -> None:
    """Sort-merge the live rows and the replayed states of one table, both in key byte order."""
    if not key_columns:
        report.add(Finding("table-without-primary-key", table, None,
                           "has no primary key: its rows cannot be matched to the trail"))
        return
    rows, states = _live_rows(conn, database, table, key_columns), index.in_key_order(table)
    row, state = next(rows, _END), next(states, _END)
    count = 0
    try:
        while row is not _END or state is not _END:
            row_key = row[0] if row is not _END else None
            state_key = state[0] if state is not _END else None
            if state is _END or (row is not _END and row_key < state_key):
                count += 1
                report.add(Finding("row-without-events", table, row_key,
                                   "the row exists but the trail never recorded it (no INSERT event)"))
                row = next(rows, _END)
            elif row is _END or state_key < row_key:
                if state[1].op != "DELETE":
                    report.add(Finding("recorded-row-missing", table, state_key,
                                       f"the row is absent although the trail's last event for it is {state[1].op} "
                                       f"at seq {state[1].seq} (deleted without an event)"))
                state = next(states, _END)
            else:
                count += 1
                _compare_row(table, row_key, row[1], state[1], report)
                row, state = next(rows, _END), next(states, _END)
    finally:
        rows.close()
    report.rows[table] = count


def _compare_row(table: str, key: str, row: dict[str, Any], state: State, report: LedgerReport) -> None:
    if state.op == "DELETE":
        report.add(Finding("deleted-row-present", table, key,
                           f"the row exists although the trail deleted it at seq {state.seq}"))
        return
    differ, unrecorded, gone = differing_columns(state.after or {}, row)
    if differ:
        report.add(Finding("row-differs", table, key,
                           f"columns {', '.join(differ)} differ from the last after-image (seq {state.seq})"))
    if unrecorded:
        report.add(Finding("columns-not-recorded", table, key,
                           f"columns {', '.join(unrecorded)} are not in the trail's images (seq {state.seq})"))
    if gone:
        report.add(Finding("recorded-columns-gone", table, key,
                           f"recorded columns {', '.join(gone)} no longer exist"))


def reconcile(conn: pymysql.connections.Connection, database: str, *, workdir: Path | None = None) -> LedgerReport:
    """Replay the trail and compare it with every audited table, all in one consistent snapshot
    (the connection must not be inside a transaction)."""
    report = LedgerReport()
    with tempfile.TemporaryDirectory(prefix="ztm-ledger-", dir=workdir) as folder:
        index = ReplayIndex(Path(folder))
        try:
            tables = audited_tables(conn, database)
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")  # times are compared as the trail records them: UTC
            with chain_snapshot(conn):
                _replay_chain(conn, database, index, report, tables)
                if report.chain_error is None:
                    for table, key_columns in tables.items():
                        _compare_table(conn, database, table, key_columns, index, report)
        finally:
            index.close()
    return report
