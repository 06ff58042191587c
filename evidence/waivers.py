"""Waivers: one known failure of a control accepted for a time, with a justification, an
approver and an expiry.

A waiver names its control and what it covers: a ``test`` (the node id pytest prints, or its
part after ``::`` such as ``test_input_policy[v4]``), a ``finding`` (a regular expression
searched for in the failure's message), or both. It covers a failure only when the failing
test carries that control and every given part matches: another test of the control that
fails, or the same test failing with another finding, still fails the run.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from ztm.errors import UserError
from ztm.schemas import validate

MAX_WAIVER_FILE = 1 << 20


@dataclass(frozen=True)
class Waiver:
    control: str
    justification: str
    approver: str
    expires: date
    test: str | None = None
    finding: str | None = None

    def expired(self, today: date) -> bool:
        return self.expires < today

    def covers(self, controls: Iterable[str], nodeid: str, message: str) -> bool:
        """Whether this waiver accepts the failure of test ``nodeid`` (carrying ``controls``)
        with ``message``."""
        if self.control not in controls:
            return False
        if self.test is not None and not (nodeid == self.test or nodeid.endswith("::" + self.test)):
            return False
        return self.finding is None or re.search(self.finding, message) is not None

    def scope(self) -> str:
        parts = ([f"test {self.test}"] if self.test else []) + ([f"finding /{self.finding}/"] if self.finding else [])
        return " and ".join(parts)

    def describe(self) -> str:
        return (f"{self.justification} ({self.scope()}; approved by {self.approver}, "
                f"until {self.expires.isoformat()})")

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in {**asdict(self), "expires": self.expires.isoformat()}.items() if v is not None}


def load_waivers(path: Path) -> list[Waiver]:
    """Read a TOML (``[[waiver]]`` tables) or JSON (``{"waivers": [...]}``) waiver file."""
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        data = path.read_bytes()[:MAX_WAIVER_FILE + 1]
    except OSError as exc:
        raise UserError(f"cannot read waiver file {path}: {exc.strerror}") from None
    if len(data) > MAX_WAIVER_FILE:
        raise UserError(f"waiver file {path} is larger than {MAX_WAIVER_FILE} bytes")
    try:
        text = data.decode()
        doc = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except UnicodeDecodeError:
        raise UserError(f"waiver file {path} is not UTF-8 text") from None
    except RecursionError:
        raise UserError(f"waiver file {path} is nested too deeply") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"waiver file {path} is not valid {kind}: {exc}") from None
    if not isinstance(doc, dict):
        raise UserError(f"waiver file {path}: the top level must be an object with a 'waivers' list, "
                        f"not {type(doc).__name__ if doc is not None else 'null'}")
    entries = doc.get("waiver", doc.get("waivers"))
    normalised = {"waivers": [{**e, "expires": _date_text(e.get("expires"))} for e in entries]} \
        if isinstance(entries, list) and all(isinstance(e, dict) for e in entries) else doc
    validate(normalised, "waivers.schema.json", f"waiver file {path}")
    waivers = [Waiver(e["control"], e["justification"], e["approver"], date.fromisoformat(e["expires"]),
                      e.get("test"), e.get("finding")) for e in normalised["waivers"]]
    for number, waiver in enumerate(waivers):
        if waiver.finding is not None:
            try:
                re.compile(waiver.finding)
            except re.error as exc:
                raise UserError(f"waiver file {path}: waiver {number} has a finding that is not a regular "
                                f"expression ({exc})") from None
    return waivers


def _date_text(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value
