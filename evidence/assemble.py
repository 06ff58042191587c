"""Put a run's bundle together: documents, evidence files, reports; validate; sign; write."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from evidence import timestamp
from evidence.bundle import json_bytes, write_bundle
from evidence.hdf import HDF_NAME, hdf_document
from evidence.html_report import HTML_NAME, render
from evidence.oscal import AP_FILE, assessment_plan, assessment_results
from evidence.results import TestResult, assign_folders, control_status
from evidence.run_info import policy_in_force, policy_summary, run_document, server_version, tool_versions
from evidence.scan import find_in, redact
from evidence.schemas import validate_documents
from evidence.sensitive import key_material, target_secrets
from evidence.sign import load_signing_key
from evidence.summary import control_verdicts
from ztm import __version__
from ztm.errors import UserError
from ztm.keep_out import kept_out
from ztm.plugin import target_info, target_path

if TYPE_CHECKING:
    from evidence.plugin import BundleWriter, HdfWriter


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as OSCAL and the project schemas expect."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _target_info(writer: BundleWriter | HdfWriter) -> dict[str, Any]:
    """What this process's fixtures read, completed by what xdist workers read."""
    info = {**writer.worker_target, **target_info(writer.config)}
    if not info:
        return {"name": None, "note": "no test loaded the target"}
    if "server_version" not in info and info.get("target_file"):  # no test used the admin path: ask now
        version, why_not = server_version(info["target_file"])
        info.update({"server_version": version} if version else {"note": str(why_not)})
    return info


def _never_in_bundle(writer: BundleWriter | HdfWriter) -> list[str]:
    key = getattr(writer, "key", None)
    return [*target_secrets(target_path(writer.config)), *(key_material(key) if key else []),
            *kept_out(writer.config), *writer.worker_kept_out]


def _redacted(files: dict[str, bytes], needles: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """Known secrets and private keys replaced by a mark; changed JSON documents validated again."""
    cleaned, findings = redact(files, needles)
    changed = {name: data for name, data in cleaned.items() if data != files[name] and name.endswith(".json")}
    try:
        validate_documents({name: json.loads(data) for name, data in changed.items()})
    except ValueError:
        raise UserError("a secret was found inside a JSON value and redacting it broke the document: "
                        + "; ".join(findings)) from None
    return cleaned, findings


def build_files(writer: BundleWriter, exit_status: int) -> dict[str, bytes]:
    """Every file of the bundle except the signer's key files, the manifest and the signature."""
    finished_s = iso(datetime.now(UTC))
    started_s = iso(writer.started)
    results = list(writer.results.values())
    assign_folders(results)
    mappings = {cid: c.mappings for cid, c in writer.catalog.controls.items()}
    severities = {cid: c.severity_json() for cid, c in writer.catalog.controls.items()}
    target = _target_info(writer)
    target_name = str(target.get("name") or "unknown target")
    tools = tool_versions()
    from ztm.plugin import target_path

    policy, no_policy = policy_in_force(target_path(writer.config))

    per_control: dict[str, list[TestResult]] = {}
    for r in results:
        for c in r.controls:
            per_control.setdefault(c, []).append(r)
    today = date.today()
    documents: dict[str, Any] = {
        "run.json": run_document(target=target, started=started_s, finished=finished_s, exit_status=exit_status,
                                 argv=list(writer.config.invocation_params.args), suite_version=__version__,
                                 tools=tools, policy=policy_summary(policy, no_policy),
                                 fail_on=getattr(writer.config.option, "fail_on", "any")),
        "results.json": {
            "schema_version": 1,
            "tests": [r.to_json(mappings, severities) for r in results],
            "controls": [{"id": cid, "title": c.title, **c.severity_json(),
                          "status": control_status(per_control.get(cid, [])),
                          "tests": [r.nodeid for r in per_control.get(cid, [])]}
                         for cid, c in writer.catalog.controls.items()],
            "waivers": {"active": [w.to_json() for w in writer.waivers if not w.expired(today)],
                        "expired_ignored": [w.to_json() for w in writer.waivers if w.expired(today)]},
        },
        "catalog.json": writer.catalog.to_json(covered=writer.covered | set(per_control)),
        f"oscal/{AP_FILE}": assessment_plan(writer.catalog, list(writer.catalog.controls), target_name=target_name,
                                            when=finished_s, version=__version__, policy=policy),
        "oscal/assessment-results.json": assessment_results(writer.catalog, results, target_name=target_name,
                                                            started=started_s, finished=finished_s,
                                                            version=__version__, tools=tools),
    }
    if policy is not None:
        documents["policy.json"] = policy.to_json()  # run.json carries its digest
    verdicts = control_verdicts(writer.catalog, results)
    documents[HDF_NAME] = hdf_document(writer.catalog, verdicts, results, run=documents["run.json"],
                                       waivers=writer.waivers, evidence_refs=True,
                                       policy=policy.parameters() if policy is not None else None)
    files: dict[str, bytes] = {}
    run_doc = documents.pop("run.json")
    for result in results:
        for item, path in zip(result.evidence, result.evidence_files, strict=True):
            if item["kind"] == "json":
                documents[path] = {"schema_version": 1, "control": result.controls[0] if result.controls else None,
                                   "test": result.nodeid, "name": item["name"], "recorded_at": item["recorded_at"],
                                   "data": json.loads(item["content"])}
            else:
                files[path] = item["content"].encode()
    validate_documents(documents)
    files.update({name: json_bytes(doc) for name, doc in documents.items()})
    files[HTML_NAME] = render(writer.catalog, verdicts, results, run_doc,
                              documents["results.json"]["waivers"]["active"]).encode()
    for name, path in (("junit.xml", writer.config.option.xmlpath),
                       ("report.html", getattr(writer.config.option, "htmlpath", None))):
        if path:
            try:
                with open(path, "rb") as handle:
                    files[name] = handle.read()
            except OSError as exc:
                raise UserError(f"{name} was not written ({exc.strerror}); the bundle would be incomplete") from None
    # No secret is signed: redact what the scan finds, say so in run.json, then scan everything again.
    needles = _never_in_bundle(writer)
    files, writer.redactions = _redacted(files, needles)
    if writer.redactions:
        run_doc["redactions"] = writer.redactions
    validate_documents({"run.json": run_doc})
    run_file, in_run = _redacted({"run.json": json_bytes(run_doc)}, needles)
    files["run.json"] = run_file["run.json"]
    writer.redactions += in_run
    left = find_in(files, needles)
    if left:
        raise UserError("secrets remain after redaction, bundle not signed: " + "; ".join(left[:5]))
    return files


def hdf_only(writer: HdfWriter) -> bytes:
    """``--hdf`` without a bundle: the same document as the bundle's hdf.json (no evidence files to refer
    to), validated, with the same secret scan: found secrets are redacted, and any left stop it."""
    results = list(writer.results.values())
    policy, _ = policy_in_force(target_path(writer.config))
    run = {"target": _target_info(writer), "started": iso(writer.started), "finished": iso(datetime.now(UTC)),
           "suite": {"version": __version__}}
    doc = hdf_document(writer.catalog, control_verdicts(writer.catalog, results), results, run=run,
                       waivers=writer.waivers, evidence_refs=False,
                       policy=policy.parameters() if policy is not None else None)
    validate_documents({HDF_NAME: doc})
    needles = _never_in_bundle(writer)
    files, writer.redactions = _redacted({HDF_NAME: json_bytes(doc)}, needles)
    left = find_in(files, needles)
    if left:
        raise UserError("secrets remain after redaction, HDF not written: " + "; ".join(left[:5]))
    return files[HDF_NAME]


def _tsa_url(writer: BundleWriter) -> str | None:
    """The target's [evidence].tsa_url: the TSA that time-stamps the manifest signature."""
    from ztm.plugin import target_path

    path = target_path(writer.config)
    try:
        url = tomllib.loads(path.read_text()).get("evidence", {}).get("tsa_url") if path and path.is_file() else None
    except (OSError, tomllib.TOMLDecodeError):
        return None  # the target fixture reports a bad target file in its own words
    return str(url) if url else None


def assemble(writer: BundleWriter, exit_status: int) -> int:
    """Build, validate, sign, time-stamp and write the bundle; returns its size in bytes."""
    files = build_files(writer, exit_status)
    key = load_signing_key(writer.key)
    cert = writer.cert.read_bytes() if writer.cert else None
    url = _tsa_url(writer)
    stamp = None
    if url:
        def stamp(signature: bytes) -> bytes | None:
            try:
                return timestamp.request(signature, url)
            except UserError as exc:  # the bundle is still signed; it is judged at verification time instead
                writer._say(f"ztm evidence: WARNING: no timestamp token in the bundle: {exc}; the signer "
                            "certificate will be judged at verification time", red=True)
                return None
    write_bundle(writer.out, files, key, cert, stamp)
    html_out = getattr(writer, "html_out", None)
    if html_out is not None:  # the same page for the archive's neighbour: links into the unpacked bundle/
        try:
            html_out.write_bytes(files[HTML_NAME].replace(b'href="evidence/', b'href="bundle/evidence/'))
        except OSError as exc:  # the signed bundle stands (assessor.html is inside it)
            writer._say(f"ztm evidence: WARNING: HTML report {html_out} not written: {exc.strerror}", red=True)
    hdf_out = getattr(writer, "hdf_out", None)
    if hdf_out is not None:  # --hdf: the bundle's hdf.json, byte for byte (secrets already redacted)
        try:
            hdf_out.write_bytes(files[HDF_NAME])
        except OSError as exc:
            writer._say(f"ztm evidence: WARNING: HDF {hdf_out} not written: {exc.strerror}", red=True)
        else:
            writer._say(f"ztm evidence: HDF (Heimdall Data Format) {hdf_out}")
    return writer.out.stat().st_size
