"""Where each benchmark writes its JSON: bench/results/<name>-<engine>.json, or --out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(doc: dict[str, Any], name: str, engine: str, out: Path | None = None, *,
                  echo: bool = True) -> Path:
    """Write ``doc`` (and print it when ``echo``); returns the path written."""
    path = out or RESULTS / f"{name}-{engine}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if echo:
        print(json.dumps(doc, indent=2))
    return path
