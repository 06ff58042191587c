"""Load and apply the project's JSON Schemas (kept as files under schemas/).

Patterns are matched with the ``regex`` module: NIST's OSCAL schemas use Unicode property
classes such as ``\\p{L}``, which Python's ``re`` (jsonschema's default) does not support.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import regex
from jsonschema import validators
from jsonschema.exceptions import ValidationError

from ztm.errors import UserError

# In a checkout schemas/ sits at the top (DESIGN §2); a wheel ships it inside ztm/ (setup.py).
_CHECKOUT_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_DIR = (_CHECKOUT_SCHEMAS if _CHECKOUT_SCHEMAS.is_dir()
              else Path(str(resources.files("ztm").joinpath("schemas"))))


@cache
def load_schema(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"schema {name} is missing from {SCHEMA_DIR} (incomplete installation)") from None


@cache
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


def _unicode_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]):
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def validator_for(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    base = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    unicode_aware = validators.extend(base, {"pattern": _unicode_pattern})
    return unicode_aware(schema, format_checker=base.FORMAT_CHECKER)


def errors(instance: Any, schema_name: str) -> list[str]:
    """Every violation, as 'path: message' lines (empty when valid)."""
    found = sorted(validator_for(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in found]


def validate(instance: Any, schema_name: str, what: str) -> None:
    """Validate ``instance``; raise UserError naming the first violation and where it is."""
    error = jsonschema.exceptions.best_match(validator_for(schema_name).iter_errors(instance))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise UserError(f"{what}: invalid at {where}: {error.message}")
