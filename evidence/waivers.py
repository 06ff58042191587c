"""Waivers: a failed control accepted for a time, with a justification and an approver."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from ztm.errors import UserError
from ztm.schemas import validate


@dataclass(frozen=True)
class Waiver:
    control: str
    justification: str
    approver: str
    expires: date

    def expired(self, today: date) -> bool:
        return self.expires < today

    def describe(self) -> str:
        return f"{self.justification} (approved by {self.approver}, until {self.expires.isoformat()})"

    def to_json(self) -> dict[str, str]:
        return {**asdict(self), "expires": self.expires.isoformat()}


def load_waivers(path: Path) -> list[Waiver]:
    """Read a TOML (``[[waiver]]`` tables) or JSON (``{"waivers": [...]}``) waiver file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read waiver file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"waiver file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") \
            from None
    entries = doc.get("waiver", doc.get("waivers"))
    normalised = {"waivers": [{**e, "expires": _date_text(e.get("expires"))} for e in entries]} \
        if isinstance(entries, list) and all(isinstance(e, dict) for e in entries) else doc
    validate(normalised, "waivers.schema.json", f"waiver file {path}")
    return [Waiver(e["control"], e["justification"], e["approver"], date.fromisoformat(e["expires"]))
            for e in normalised["waivers"]]


def _date_text(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value
