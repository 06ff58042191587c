"""The ``evidence`` fixture: what a control observed, attached to its test's report.

Items travel on the test report (``report.ztm_evidence``), so under xdist they reach the
controller with the report and the bundle is built once, there.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
REPORT_ATTRIBUTE = "ztm_evidence"


class EvidenceRecorder:
    """``evidence.json(name, data)`` and ``evidence.text(name, text)`` inside a control test."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def _add(self, name: str, kind: str, content: str) -> None:
        if not NAME.match(name):
            raise ValueError(f"evidence name {name!r}: use letters, digits, '.', '_' or '-' (no paths)")
        if any(item["name"] == name for item in self.items):
            raise ValueError(f"evidence {name!r} recorded twice in one test")
        self.items.append({"name": name, "kind": kind, "content": content,
                           "recorded_at": datetime.now(UTC).isoformat(timespec="milliseconds")})

    def json(self, name: str, data: Any) -> None:
        # Serialised now: a value that cannot be JSON fails the test that recorded it, not the bundle.
        self._add(name, "json", json.dumps(data, default=_fallback, sort_keys=True))

    def text(self, name: str, text: str) -> None:
        self._add(name, "text", str(text))


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
