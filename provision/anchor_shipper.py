"""The anchor host's shipper: every anchor to every sink, a failing sink's anchors kept in a
local buffer and retried with backoff, so no anchor is dropped; until it is delivered the
sink lags the others, which verification reports as a gap."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ztm.errors import UserError


@dataclass
class Shipper:
    """Ships every anchor to every sink. A sink that fails, whatever the error, keeps its
    anchors in its own local buffer, retried (oldest first) at the next shipment after a
    growing backoff; the other sinks are not held back and never receive an anchor twice.
    ``failures`` names each sink that did not receive everything, and why."""

    sinks: list[Any]
    buffer_path: Path
    failures: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def _buffer(self, index: int) -> Path:
        return self.buffer_path.with_name(f"{self.buffer_path.name}.{index}")

    def pending(self) -> int:
        return sum(len(load_records(self._buffer(i))) for i in range(len(self.sinks)))

    def ship(self, record: dict[str, Any] | None) -> None:
        """Ship ``record`` (None: only retry what is buffered) to every sink."""
        self.failures = []
        for index, sink in enumerate(self.sinks):
            buffer = self._buffer(index)
            pending = [*load_records(buffer), *([record] if record else [])]
            if not pending:
                continue
            backoff = buffer.with_name(buffer.name + ".backoff")
            state = load_records(backoff)
            not_before = state[0]["not_before"] if state else 0.0
            if self.clock() < not_before:
                save_records(buffer, pending)
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
                delay = min(2 * (state[0]["delay"] if state else 0.5), 60.0)
                error = _one_line(exc)
                self.failures.append(f"{sink.name}: {error}; {len(pending) - shipped} anchor(s) buffered in {buffer}, "
                                     f"retried in {delay:.0f} s")
                save_records(backoff, [{"not_before": self.clock() + delay, "delay": delay, "error": error}])
            else:
                save_records(backoff, [])
            save_records(buffer, pending[shipped:])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"[:300]


def load_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


