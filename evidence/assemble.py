"""Put a run's bundle together: documents, evidence files, reports; validate; sign; write."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence import timestamp
from evidence.bundle import json_bytes, write_bundle
from evidence.hdf import HDF_NAME, hdf_document
from evidence.html_report import HTML_NAME, render
from evidence.oscal import AP_FILE, assessment_plan, assessment_results
from evidence.results import UNSAFE, TestResult, assign_folders, by_target, control_status
from evidence.run_info import policy_in_force, policy_summary, run_document, server_version, tool_versions
from evidence.scan import find_in, redact
from evidence.schemas import validate_documents
from evidence.sensitive import key_material, target_secrets
from evidence.sign import load_signing_key
from evidence.summary import control_verdicts
from ztm import __version__
from ztm.errors import UserError
from ztm.keep_out import kept_out
from ztm.plugin import fleet, target_info, target_path, targets_info
from ztm.target import read_target_file

if TYPE_CHECKING:
    from evidence.plugin import BundleWriter, HdfWriter


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as OSCAL and the project schemas expect."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _target_files(writer: BundleWriter | HdfWriter) -> dict[str, Path | None]:
    """The run's target files by target name: every member of a fleet, else the one target."""
    members = fleet(writer.config)
    if members:
        return dict(members)
    path = target_path(writer.config)
    known = {**writer.worker_targets, **targets_info(writer.config)}
    name = next(iter(known), None)
    if name is None and path is not None and path.is_file():
        try:
            name = str(read_target_file(path)["target"]["name"])
        except (UserError, KeyError, TypeError):
            name = None
    return {name or "unknown target": path}


def _target_info(writer: BundleWriter | HdfWriter, name: str, path: Path | None) -> dict[str, Any]:
    """What this process's fixtures read of one target, completed by what xdist workers read."""
    info = {**writer.worker_targets.get(name, {}), **target_info(writer.config, name)}
    if not info:
        return {"name": None if name == "unknown target" else name, "note": "no test loaded the target"}
    if "server_version" not in info and info.get("target_file"):  # no test used the admin path: ask now
        version, why_not = server_version(info["target_file"])
        info.update({"server_version": version} if version else {"note": str(why_not)})
    return info


def _never_in_bundle(writer: BundleWriter | HdfWriter) -> list[str]:
    key = getattr(writer, "key", None)
    secrets = [s for path in _target_files(writer).values() for s in target_secrets(path)]
    return [*secrets, *(key_material(key) if key else []), *kept_out(writer.config), *writer.worker_kept_out]


def _policy_file(name: str, in_fleet: bool) -> str:
    return f"policy/{UNSAFE.sub('_', name)}.json" if in_fleet else "policy.json"


def _control_rows(catalog: Any, results: list[TestResult]) -> list[dict[str, Any]]:
    per_control: dict[str, list[TestResult]] = {}
    for r in results:
        for c in r.controls:
            per_control.setdefault(c, []).append(r)
    return [{"id": cid, "title": c.title, **c.severity_json(), "status": control_status(per_control.get(cid, [])),
             "tests": [r.nodeid for r in per_control.get(cid, [])]} for cid, c in catalog.controls.items()]


def hdf_name(name: str, in_fleet: bool) -> str:
    """hdf.json; in a fleet one HDF per target, hdf/<target name>.json (HDF has one platform per file)."""
    return f"hdf/{UNSAFE.sub('_', name)}.json" if in_fleet else HDF_NAME


def _hdf_documents(writer: BundleWriter | HdfWriter, groups: dict[str, list[TestResult]],
                   targets: dict[str, dict[str, Any]], policies: dict[str, tuple[Any, str | None]],
                   run: dict[str, Any], evidence_refs: bool) -> dict[str, Any]:
    """Each target's HDF document (exec JSON), by bundle file name."""
    in_fleet = len(groups) > 1
    return {hdf_name(name, in_fleet): hdf_document(
        writer.catalog, control_verdicts(writer.catalog, group), group,
        run={**run, "target": {k: v for k, v in targets[name].items() if k != "policy"}},
        waivers=writer.waivers, evidence_refs=evidence_refs,
        policy=policies[name][0].parameters() if policies[name][0] is not None else None)
        for name, group in groups.items()}


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
    files_by_name = _target_files(writer)
    in_fleet = len(files_by_name) > 1
    groups = by_target(results, list(files_by_name))
    for name, group in groups.items():
        for r in group:
            r.target = name
    targets = {name: _target_info(writer, name, path) for name, path in files_by_name.items()}
    policies = {name: policy_in_force(path) for name, path in files_by_name.items()}
    tools = tool_versions()
    for name, (policy, no_policy) in policies.items():
        summary = policy_summary(policy, no_policy)
        if policy is not None:
            summary["file"] = _policy_file(name, in_fleet)
        targets[name]["policy"] = summary
    if in_fleet:
        fleet_name = f"fleet of {len(targets)} targets: {', '.join(targets)}"
        run_target: dict[str, Any] = {"name": fleet_name, "note": "a fleet assessed in one run: every test ran once "
                                      "per target, its result names the target; see 'targets'"}
        run_policy = None
    else:
        run_target = {k: v for k, v in next(iter(targets.values())).items() if k != "policy"}
        run_policy = next(iter(targets.values()))["policy"]
    target_name = str(run_target.get("name") or "unknown target")

    today = date.today()
    documents: dict[str, Any] = {
        "run.json": run_document(target=run_target, started=started_s, finished=finished_s, exit_status=exit_status,
                                 argv=list(writer.config.invocation_params.args), suite_version=__version__,
                                 tools=tools, policy=run_policy, targets=targets,
                                 fail_on=getattr(writer.config.option, "fail_on", "any")),
        "results.json": {
            "schema_version": 1,
            "tests": [r.to_json(mappings, severities) for r in results],
            "controls": _control_rows(writer.catalog, results),
            "targets": {name: {"controls": _control_rows(writer.catalog, group), "tests": [r.nodeid for r in group]}
                        for name, group in groups.items()},
            "waivers": {"active": [w.to_json() for w in writer.waivers if not w.expired(today)],
                        "expired_ignored": [w.to_json() for w in writer.waivers if w.expired(today)]},
        },
        "catalog.json": writer.catalog.to_json(covered=writer.covered | {c for r in results for c in r.controls}),
        f"oscal/{AP_FILE}": assessment_plan(writer.catalog, list(writer.catalog.controls), target_name=target_name,
                                            when=finished_s, version=__version__,
                                            policies={n: p for n, (p, _) in policies.items() if p is not None}),
        "oscal/assessment-results.json": assessment_results(writer.catalog, groups, target_name=target_name,
                                                            started=started_s, finished=finished_s,
                                                            version=__version__, tools=tools),
    }
    for name, (policy, _) in policies.items():
        if policy is not None:
            documents[_policy_file(name, in_fleet)] = policy.to_json()  # run.json carries its digest
    documents.update(_hdf_documents(writer, groups, targets, policies, documents["run.json"], evidence_refs=True))
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
    files[HTML_NAME] = render(writer.catalog, groups, run_doc, documents["results.json"]["waivers"]["active"]).encode()
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


def hdf_only(writer: HdfWriter) -> dict[str, bytes]:
    """``--hdf`` without a bundle: the same documents as the bundle's hdf.json (hdf/<target>.json in a
    fleet; no evidence files to refer to), validated, with the same secret scan: found secrets are
    redacted, and any left stop it. By bundle file name."""
    results = list(writer.results.values())
    files_by_name = _target_files(writer)
    groups = by_target(results, list(files_by_name))
    targets = {name: _target_info(writer, name, path) for name, path in files_by_name.items()}
    policies = {name: policy_in_force(path) for name, path in files_by_name.items()}
    run = {"started": iso(writer.started), "finished": iso(datetime.now(UTC)), "suite": {"version": __version__}}
    docs = _hdf_documents(writer, groups, targets, policies, run, evidence_refs=False)
    validate_documents(docs)
    needles = _never_in_bundle(writer)
    files, writer.redactions = _redacted({name: json_bytes(doc) for name, doc in docs.items()}, needles)
    left = find_in(files, needles)
    if left:
        raise UserError("secrets remain after redaction, HDF not written: " + "; ".join(left[:5]))
    return files


def hdf_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """Where ``--hdf OUT`` writes each HDF of the run: OUT itself for hdf.json; in a fleet
    ``<OUT stem>-<target>.json`` beside it for each hdf/<target>.json."""
    stem = out.name.removesuffix(".json")
    return {name: out if name == HDF_NAME else out.with_name(f"{stem}-{name.removeprefix('hdf/')}")
            for name in names}


def _tsa_url(writer: BundleWriter) -> str | None:
    """The target's [evidence].tsa_url: the TSA that time-stamps the manifest signature (in a
    fleet, the first target's, like the signing key)."""
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
        names = [n for n in files if n == HDF_NAME or (n.startswith("hdf/") and n.endswith(".json"))]
        for name, path in hdf_paths(hdf_out, names).items():
            try:
                path.write_bytes(files[name])
            except OSError as exc:
                writer._say(f"ztm evidence: WARNING: HDF {path} not written: {exc.strerror}", red=True)
            else:
                writer._say(f"ztm evidence: HDF (Heimdall Data Format) {path}")
    return writer.out.stat().st_size
