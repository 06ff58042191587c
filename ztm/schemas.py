"""Load and apply the project's JSON Schemas (kept as files under schemas/)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ztm.errors import UserError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / name
    if not path.is_file():  # installed as a wheel: schemas ship as package data
        path = Path(str(resources.files("ztm").joinpath("schemas", name)))
    return json.loads(path.read_text())


def validate(instance: Any, schema_name: str, what: str) -> None:
    """Validate ``instance``; raise UserError naming the first violation and where it is."""
    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise UserError(f"{what}: invalid at {where}: {error.message}")
