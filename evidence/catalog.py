"""The control catalog (controls/catalog.toml): ids, titles and framework mappings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ztm.errors import UserError

CATALOG_PATH = Path(__file__).resolve().parent.parent / "controls" / "catalog.toml"
FRAMEWORKS = ("nist", "stig", "cis")


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    family: str
    rationale: str
    mappings: dict[str, list[str]]
    optional: bool = False

    def mapping_text(self) -> str:
        return "; ".join(f"{fw.upper()} {', '.join(ids)}" for fw, ids in self.mappings.items() if ids)


@dataclass(frozen=True)
class Catalog:
    frameworks: dict[str, dict[str, str]]
    controls: dict[str, Control] = field(default_factory=dict)

    def get(self, control_id: str) -> Control | None:
        return self.controls.get(control_id)

    def to_json(self, covered: set[str]) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "frameworks": self.frameworks,
            "controls": [
                {"id": c.id, "title": c.title, "family": c.family, "rationale": c.rationale,
                 "mappings": c.mappings, "optional": c.optional, "has_tests": c.id in covered}
                for c in self.controls.values()
            ],
        }


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read the control catalog {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"the control catalog {path} is not valid TOML: {exc}") from None
    controls = {}
    for cid, entry in doc.get("controls", {}).items():
        controls[cid] = Control(cid, entry["title"], entry.get("family", ""), " ".join(entry["rationale"].split()),
                                {fw: list(entry.get(fw, [])) for fw in FRAMEWORKS}, bool(entry.get("optional")))
    return Catalog({k: dict(v) for k, v in doc.get("frameworks", {}).items()}, controls)
