"""Which schema each JSON file of a bundle must satisfy, and the check run before signing.

Project schemas go through ``ztm.schemas`` (``regex``-backed patterns). The assessment-plan
subset refers into NIST's official OSCAL schema by its ``$id``, so its validator carries a
registry holding that schema.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
from jsonschema import validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from ztm import schemas as ztm_schemas
from ztm.errors import UserError

OSCAL_AR_SCHEMA = "oscal/oscal_assessment-results_schema.json"
OSCAL_AP_SCHEMA = "oscal/assessment-plan-subset.schema.json"
EVIDENCE_ITEM_SCHEMA = "evidence-item.schema.json"
HDF_SCHEMA = "hdf/exec-json.json"  # MITRE's exec JSON schema (inspecjs), see schemas/hdf/SOURCE.toml

BUNDLE_SCHEMAS = {
    "run.json": "run.schema.json",
    "results.json": "results.schema.json",
    "catalog.json": "catalog.schema.json",
    "policy.json": "policy.schema.json",
    "oscal/assessment-results.json": OSCAL_AR_SCHEMA,
    "oscal/assessment-plan.json": OSCAL_AP_SCHEMA,
    "hdf.json": HDF_SCHEMA,
}


def schema_for(bundle_name: str) -> str | None:
    """The schema a bundle file must satisfy; None for files that are not JSON documents."""
    if bundle_name in BUNDLE_SCHEMAS:
        return BUNDLE_SCHEMAS[bundle_name]
    if bundle_name.startswith("evidence/") and bundle_name.endswith(".json"):
        return EVIDENCE_ITEM_SCHEMA
    if bundle_name.startswith("policy/") and bundle_name.endswith(".json"):  # a fleet: one policy per target
        return BUNDLE_SCHEMAS["policy.json"]
    if bundle_name.startswith("hdf/") and bundle_name.endswith(".json"):  # a fleet: one HDF per target
        return HDF_SCHEMA
    return None


@cache
def _oscal_validator(name: str) -> jsonschema.protocols.Validator:
    official = ztm_schemas.load_schema(OSCAL_AR_SCHEMA)
    registry = Registry().with_resource(official["$id"], Resource.from_contents(official, DRAFT7))
    schema = ztm_schemas.load_schema(name)
    base = validators.validator_for(schema, default=jsonschema.Draft7Validator)
    unicode_aware = validators.extend(base, {"pattern": ztm_schemas._unicode_pattern})
    return unicode_aware(schema, registry=registry, format_checker=base.FORMAT_CHECKER)


def problems(doc: Any, schema_name: str) -> list[str]:
    """Every violation of ``doc`` as 'path: message' (empty when valid)."""
    if schema_name != OSCAL_AP_SCHEMA:
        return ztm_schemas.errors(doc, schema_name)
    found = sorted(_oscal_validator(schema_name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in found]


def validate_documents(documents: dict[str, Any]) -> None:
    """Validate every JSON document of a bundle; raise UserError naming file and place on violation."""
    found: list[str] = []
    for name, doc in sorted(documents.items()):
        schema = schema_for(name)
        if schema is None:
            raise UserError(f"{name}: no schema is defined for this bundle file; refusing to sign it unchecked")
        found += [f"{name}: {line}" for line in problems(doc, schema)[:3]]
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise UserError("schema violation, bundle not signed: " + "; ".join(found[:5]) + more)
