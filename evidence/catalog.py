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
SEVERITIES = ("high", "medium", "low")
# DISA's categories: CAT I is high, CAT II medium, CAT III low severity.
STIG_CATEGORY = {"high": "CAT I", "medium": "CAT II", "low": "CAT III"}


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    family: str
    rationale: str
    mappings: dict[str, list[str]]
    optional: bool = False
    severity: str = "medium"

    @property
    def stig_category(self) -> str | None:
        """The STIG category of the severity, for a control mapped to STIG rules (else None)."""
        return STIG_CATEGORY[self.severity] if self.mappings.get("stig") else None

    def severity_text(self) -> str:
        return self.severity + (f" ({self.stig_category})" if self.stig_category else "")

    def severity_json(self) -> dict[str, str]:
        return {"severity": self.severity, **({"stig_category": self.stig_category} if self.stig_category else {})}

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
                 **c.severity_json(), "mappings": c.mappings, "optional": c.optional, "has_tests": c.id in covered}
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
        severity = entry.get("severity")
        if severity not in SEVERITIES:
            raise UserError(f"the control catalog {path}: {cid} has severity {severity!r}, not one of "
                            f"{', '.join(SEVERITIES)}")
        controls[cid] = Control(cid, entry["title"], entry.get("family", ""), " ".join(entry["rationale"].split()),
                                {fw: list(entry.get(fw, [])) for fw in FRAMEWORKS}, bool(entry.get("optional")),
                                severity)
    return Catalog({k: dict(v) for k, v in doc.get("frameworks", {}).items()}, controls)
