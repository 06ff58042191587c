"""Put a run's bundle together: documents, evidence files, reports; validate; sign; write."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from evidence.bundle import json_bytes, write_bundle
from evidence.oscal import AP_FILE, assessment_plan, assessment_results
from evidence.results import TestResult, control_status
from evidence.run_info import run_document
from evidence.sign import load_signing_key
from ztm import __version__
from ztm.errors import UserError
from ztm.schemas import errors as schema_errors

if TYPE_CHECKING:
    from evidence.plugin import BundleWriter

OSCAL_AR_SCHEMA = "oscal/oscal_assessment-results_schema.json"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _target_info(config: Any) -> dict[str, Any]:
    from ztm.plugin import TARGET_INFO

    info = dict(config.stash.get(TARGET_INFO, {}))
    return info or {"name": None, "note": "no test loaded the target"}


def assemble(writer: BundleWriter, exit_status: int) -> int:
    """Build, validate, sign and write the bundle; returns its size in bytes."""
    finished = datetime.now(UTC)
    results = list(writer.results.values())
    mappings = {cid: c.mappings for cid, c in writer.catalog.controls.items()}
    target = _target_info(writer.config)
    target_name = str(target.get("name") or "unknown target")
    started_s, finished_s = _iso(writer.started), _iso(finished)

    per_control: dict[str, list[TestResult]] = {}
    for r in results:
        for c in r.controls:
            per_control.setdefault(c, []).append(r)
    today = date.today()
    documents: dict[str, Any] = {
        "run.json": run_document(target=target, started=started_s, finished=finished_s, exit_status=exit_status,
                                 argv=list(writer.config.invocation_params.args), suite_version=__version__),
        "results.json": {
            "schema_version": 1,
            "tests": [r.to_json(mappings) for r in results],
            "controls": [{"id": cid, "title": c.title, "status": control_status(per_control.get(cid, [])),
                          "tests": [r.nodeid for r in per_control.get(cid, [])]}
                         for cid, c in writer.catalog.controls.items()],
            "waivers": {"active": [w.to_json() for w in writer.waivers if not w.expired(today)],
                        "expired_ignored": [w.to_json() for w in writer.waivers if w.expired(today)]},
        },
        "catalog.json": writer.catalog.to_json(covered=set(per_control)),
        f"oscal/{AP_FILE}": assessment_plan(writer.catalog, sorted(per_control), target_name=target_name,
                                            when=finished_s, version=__version__),
        "oscal/assessment-results.json": assessment_results(writer.catalog, results, target_name=target_name,
                                                            started=started_s, finished=finished_s,
                                                            version=__version__),
    }
    files: dict[str, bytes] = {}
    for result in results:
        for item in result.evidence:
            if item["kind"] == "json":
                doc = {"schema_version": 1, "control": result.controls[0] if result.controls else None,
                       "test": result.nodeid, "name": item["name"], "recorded_at": item["recorded_at"],
                       "data": json.loads(item["content"])}
                documents[f"{result.folder}/{item['name']}.json"] = doc
            else:
                files[f"{result.folder}/{item['name']}.txt"] = item["content"].encode()
    _validate(documents)
    files.update({name: json_bytes(doc) for name, doc in documents.items()})
    for name, path in (("junit.xml", writer.config.option.xmlpath),
                       ("report.html", getattr(writer.config.option, "htmlpath", None))):
        if path:
            try:
                with open(path, "rb") as handle:
                    files[name] = handle.read()
            except OSError as exc:
                raise UserError(f"{name} was not written ({exc.strerror}); the bundle would be incomplete") from None
    key = load_signing_key(writer.key)
    cert = writer.cert.read_bytes() if writer.cert else None
    write_bundle(writer.out, files, key, cert)
    return writer.out.stat().st_size


SCHEMAS = {
    "run.json": "run.schema.json",
    "results.json": "results.schema.json",
    "catalog.json": "catalog.schema.json",
    "oscal/assessment-results.json": OSCAL_AR_SCHEMA,
}


def _validate(documents: dict[str, Any]) -> None:
    problems = []
    for name, doc in documents.items():
        schema = SCHEMAS.get(name, "evidence-item.schema.json" if name.startswith("evidence/") else None)
        if schema is None:
            continue
        found = schema_errors(doc, schema)
        problems += [f"{name}: {line}" for line in found[:3]]
    if problems:
        raise UserError("schema violation, bundle not signed: " + "; ".join(problems[:5]))
