"""The anchor host's shipper: every anchor to every sink, exactly once as the sinks see it.

A new anchor is first written to every sink's local buffer (atomically: temporary file,
fsync, rename, fsync of the folder), then shipped from there, oldest first; what a sink
received is removed from its buffer afterwards. A shipper killed between a delivery and
saving its buffer delivers that anchor again on its next round, and the sinks and the
verifiers recognise the repeat (idempotent delivery), so nothing is lost and nothing breaks
the chain. A failing sink keeps its anchors, retried after a growing backoff; until then it
lags the others, which verification reports as a gap. A buffer file that cannot be parsed
(a torn write, a disk error) is moved aside under a ``.corrupt-…`` name, logged, and its
readable anchors kept: anchoring goes on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ztm.errors import UserError
from ztm.files import write_private

log = logging.getLogger(__name__)


@dataclass
class Shipper:
    """Ships every anchor to every sink. A sink that fails, whatever the error, keeps its
    anchors in its own local buffer, retried (oldest first) at the next shipment after a
    growing backoff; the other sinks are not held back. ``failures`` names each sink that did
    not receive everything, and why."""

    sinks: list[Any]
    buffer_path: Path
    failures: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def _buffer(self, index: int) -> Path:
        return self.buffer_path.with_name(f"{self.buffer_path.name}.{index}")

    def pending(self) -> int:
        return sum(len(load_records(self._buffer(i))) for i in range(len(self.sinks)))

    def enqueue(self, record: dict[str, Any]) -> None:
        """Write ``record`` ahead into every sink's buffer (durably) before any delivery."""
        seq = record["checkpoint"]["anchor_seq"]
        for index in range(len(self.sinks)):
            buffer = self._buffer(index)
            held = load_records(buffer)
            if not any(r.get("checkpoint", {}).get("anchor_seq") == seq for r in held):
                save_records(buffer, [*held, record])

    def ship(self, record: dict[str, Any] | None) -> None:
        """Ship ``record`` (None: only retry what is buffered) to every sink."""
        self.failures = []
        if record is not None:
            self.enqueue(record)
        for index, sink in enumerate(self.sinks):
            buffer = self._buffer(index)
            pending = load_records(buffer)
            if not pending:
                continue
            backoff = buffer.with_name(buffer.name + ".backoff")
            state = [s for s in load_records(backoff) if isinstance(s.get("not_before"), int | float)]
            not_before = state[0]["not_before"] if state else 0.0
            if self.clock() < not_before:
                wait = not_before - self.clock()
                self.failures.append(f"{sink.name}: {state[0].get('error', 'failing')}; in backoff for {wait:.0f} s, "
                                     f"{len(pending)} anchor(s) buffered in {buffer}")
                continue
            shipped = 0
            try:
                for item in pending:
                    sink.ship(item)
                    shipped += 1
            except Exception as exc:  # any sink error: buffer it, never drop the anchor
                delay = min(2 * float(state[0].get("delay", 0.5) if state else 0.5), 60.0)
                error = _one_line(exc)
                self.failures.append(f"{sink.name}: {error}; {len(pending) - shipped} anchor(s) buffered in {buffer}, "
                                     f"retried in {delay:.0f} s")
                save_records(backoff, [{"not_before": self.clock() + delay, "delay": delay, "error": error}])
            else:
                if state:
                    save_records(backoff, [])
            if shipped:
                save_records(buffer, pending[shipped:])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"[:300]


def load_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects a buffer or state file holds, one a line. A file with a line that is
    not a JSON object is copied aside (``PATH.corrupt-TIME``) and logged; its readable
    records are kept, so the anchors in it are still delivered."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("ztm anchor: cannot read %s (%s): treated as empty", path, exc.strerror)
        return []
    records, bad = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    if bad:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            write_private(aside, data)
            save_records(path, records)
            log.warning("ztm anchor: %s held %d unreadable line(s): quarantined as %s, %d record(s) kept",
                        path, bad, aside, len(records))
        except OSError as exc:
            log.warning("ztm anchor: %s held %d unreadable line(s) and could not be quarantined (%s)", path, bad,
                        exc.strerror)
    return records


def save_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    write_private(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
