"""pytest plugin: control ids from the catalog, the ``evidence`` fixture, waivers, and
``--evidence-out`` (the signed bundle of DESIGN §7).

Small classes, registered in ``pytest_configure`` as pytest-reportlog does:
``CatalogGate`` (every process: unknown ids, --control, --controls-list, waivers),
``SecretMask`` (every process, bundle or not: known secrets masked in every report) and
``BundleWriter`` (the controller only, never an xdist worker: collects reports and writes
the bundle once, after JUnit and pytest-html have written theirs). A bundle run also
registers ``FailureScrubber`` (every process: no argument values or locals in failure
reports) and, on xdist workers, ``WorkerRelay`` (target identity and kept-out values to the
controller).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from evidence.assemble import assemble, hdf_only, hdf_paths
from evidence.bundle import check_destination
from evidence.catalog import Catalog, load_catalog
from evidence.recorder import REPORT_ATTRIBUTE, EvidenceRecorder
from evidence.relay import WorkerRelay, received
from evidence.results import TestResult, record_report
from evidence.scrub import FailureScrubber, SecretMask
from evidence.sensitive import target_secrets
from evidence.sign import check_signer
from evidence.summary import GATES, ControlSummary
from evidence.waivers import Waiver, load_waivers
from ztm.errors import UserError
from ztm.plugin import target_path, target_paths, without_target
from ztm.target import read_target_file, resolve_path

RECORDER = pytest.StashKey[EvidenceRecorder]()
LAB_SIGNER = ("lab/pki/evidence/signer.key", "lab/pki/evidence/signer.pem")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ztm-evidence", "Zero-Trust MySQL evidence")
    group.addoption("--evidence-out", metavar="PATH", default=None,
                    help="write the signed evidence bundle (tar.gz) here at the end of the run")
    group.addoption("--evidence-html", metavar="PATH", default=None,
                    help="with --evidence-out: also write the assessor's HTML report here (default: next to the "
                         "bundle, <bundle>.html; its evidence links point into the unpacked bundle/ beside it)")
    group.addoption("--hdf", metavar="PATH", default=None,
                    help="also write the results as Heimdall Data Format (InSpec exec JSON, for MITRE Heimdall and "
                         "the SAF CLI) here; with --evidence-out it is the bundle's hdf.json, without it the same "
                         "document without links to evidence files")
    group.addoption("--evidence-key", metavar="FILE", default=None,
                    help="Ed25519 private key (PEM, mode 0600) that signs the bundle; default: the target's "
                         "[evidence].signing_key, else the lab's")
    group.addoption("--evidence-cert", metavar="FILE", default=None,
                    help="the signer's certificate, put in the bundle (default: next to the lab key)")
    group.addoption("--control", action="append", default=[], metavar="ID",
                    help="run only the tests of this control (repeatable), e.g. --control ZTM-TLS-1")
    group.addoption("--controls-list", action="store_true", help="list the catalog and which controls have tests")
    group.addoption("--fail-on", choices=GATES, default="any", metavar="SEVERITY",
                    help="exit 1 only when a control of this severity or higher is not satisfied "
                         "(high, medium, low; default any: every failed test fails the run). Waived controls never "
                         "fail the gate; a failed test of no control always does")
    group.addoption("--waivers", metavar="FILE", default=None,
                    help="waiver file (TOML or JSON): control, test and/or finding, justification, approver, "
                         "expires")


def controls_of(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("control"):
        ids += [str(a) for a in mark.args if str(a) not in ids]
    return ids


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        catalog = load_catalog()
        waivers = load_waivers(Path(config.option.waivers)) if config.option.waivers else []
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    unknown = sorted({w.control for w in waivers if catalog.get(w.control) is None})
    if unknown:
        raise pytest.UsageError(f"waiver file {config.option.waivers}: {', '.join(unknown)} "
                                "not in controls/catalog.toml")
    missing = [c for c in config.option.control if catalog.get(c) is None]
    if missing:
        raise pytest.UsageError(f"--control {', '.join(missing)}: not in controls/catalog.toml")
    if config.option.controls_list:
        config.option.dist = "no"  # list in this process: xdist (configured after us) starts no workers
    gate = CatalogGate(config, catalog, waivers)
    config.pluginmanager.register(gate, "ztm-catalog-gate")
    config.pluginmanager.register(SecretMask(config, lambda: [s for path in target_paths(config)
                                                              for s in target_secrets(path)]), "ztm-secret-mask")
    if not hasattr(config, "workerinput") and not config.option.controls_list:  # the controller has the reports
        config.pluginmanager.register(ControlSummary(config, catalog), "ztm-control-summary")
    if (config.option.evidence_out is None and config.option.hdf is None) or config.option.controls_list:
        return
    if config.option.evidence_out is not None and not config.option.evidence_out.strip():  # a mistake, not "none"
        raise pytest.UsageError("--evidence-out is empty: name the bundle file, e.g. --evidence-out bundle.tar.gz")
    config.pluginmanager.register(FailureScrubber(config), "ztm-failure-scrubber")
    if hasattr(config, "workerinput"):  # an xdist worker: the controller writes the bundle
        config.pluginmanager.register(WorkerRelay(config), "ztm-worker-relay")
        return
    try:
        hdf_out = check_hdf_destination(config.option.hdf) if config.option.hdf is not None else None
        out = check_destination(config.option.evidence_out) if config.option.evidence_out is not None else None
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    if out is None:
        config.pluginmanager.register(HdfWriter(config, gate, hdf_out), "ztm-hdf-writer")
        return
    if hdf_out == out:
        raise pytest.UsageError(f"--hdf {config.option.hdf} is the bundle itself: name another file")
    key, cert = _signer_paths(config)
    writer = BundleWriter(config, gate, out, key, cert)
    writer.hdf_out = hdf_out
    config.pluginmanager.register(writer, "ztm-bundle-writer")


def check_hdf_destination(value: str) -> Path:
    """Where --hdf writes; UserError when that cannot be a file (checked before any test runs)."""
    out = Path(value).expanduser()
    if not value.strip() or out.is_dir():
        raise UserError(f"--hdf {value!r} is a directory or empty: name the file, e.g. --hdf results.hdf.json")
    if out.exists() and not out.is_file():
        raise UserError(f"--hdf {value}: exists and is not a regular file (it would be replaced)")
    if not out.resolve().parent.is_dir():
        raise UserError(f"--hdf {value}: folder {out.resolve().parent} does not exist")
    return out.resolve()


def _signer_paths(config: pytest.Config) -> tuple[Path, Path | None]:
    """The signing key is checked before any test runs: no key, no run (never an unsigned bundle)."""
    key = config.option.evidence_key
    cert = config.option.evidence_cert
    if key is None:
        section = _target_evidence_section(config)
        key, cert = section.get("signing_key"), cert or section.get("signing_cert")
    if key is None and (Path(config.rootpath) / LAB_SIGNER[0]).exists():
        key, cert = (str(Path(config.rootpath) / p) for p in LAB_SIGNER)
    if key is None:
        raise pytest.UsageError("--evidence-out needs a signing key: pass --evidence-key FILE (Ed25519, PEM) "
                                "or name one in the target's [evidence] section; an unsigned bundle is never written")
    cert_path = Path(cert) if cert else None
    if cert_path is not None and not cert_path.is_file():
        raise pytest.UsageError(f"signer certificate {cert_path} does not exist")
    try:
        warning = check_signer(Path(key), cert_path)
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    if warning:
        print(warning, file=sys.stderr)
    return Path(key), cert_path


def _target_evidence_section(config: pytest.Config) -> dict[str, str]:
    path = target_path(config)
    if path is None or not path.is_file():
        return {}
    try:
        section = read_target_file(path).get("evidence", {})
    except UserError:
        return {}  # the target fixture reports a bad target file in its own words
    return {k: str(resolve_path(path.parent, v)) for k, v in section.items()}


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> EvidenceRecorder:
    """Attach observed data to this test's evidence: ``evidence.json(name, data)``, ``evidence.text(name, s)``."""
    recorder = EvidenceRecorder()
    request.node.stash[RECORDER] = recorder
    return recorder


class CatalogGate:
    """Control ids must exist in the catalog; --control selects; waived failures are marked."""

    def __init__(self, config: pytest.Config, catalog: Catalog, waivers: list[Waiver]) -> None:
        self.config = config
        self.catalog = catalog
        today = date.today()
        self.active = [w for w in waivers if not w.expired(today)]
        self.expired = [w for w in waivers if w.expired(today)]
        self.waivers = waivers
        self.covered: set[str] = set()  # controls with a collected test (here, or on xdist workers)
        self.waived: list[tuple[str, str]] = []  # (nodeid, reason)

    def _unknown(self, items: list[Any]) -> str | None:
        bad = [f"{cid} (on {item.nodeid})" for item in items if isinstance(item, pytest.Item)
               for cid in controls_of(item) if self.catalog.get(cid) is None]
        return ("unknown control id " + ", ".join(bad) + ": every id must be defined in controls/catalog.toml"
                if bad else None)

    @pytest.hookimpl(wrapper=True)
    def pytest_pycollect_makeitem(self, collector: pytest.Collector, name: str, obj: object):
        # A collection error of the module, in whichever process collects (xdist workers too).
        made = yield
        problem = self._unknown(made if isinstance(made, list) else [made])
        if problem:
            raise pytest.Collector.CollectError(problem)
        return made

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        problem = self._unknown(items)  # items not made by the Python collector (plugins, doctests)
        if problem:
            raise pytest.UsageError(problem)
        self.covered |= {cid for item in items for cid in controls_of(item)}
        wanted = config.option.control
        if wanted:
            keep = [i for i in items if set(controls_of(i)) & set(wanted)]
            dropped = [i for i in items if i not in keep]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
            items[:] = keep
        if config.option.controls_list:
            self._print_catalog(config, items)
            items[:] = []  # listed, not run: the session ends normally (exit 0, see pytest_sessionfinish)
            config.option.verbose = -2  # no "no tests ran" line under the listing

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.config.option.controls_list and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK

    def _print_catalog(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        write = tr.write_line if tr else print
        tests: dict[str, list[str]] = {}
        for item in items:
            for cid in controls_of(item):
                tests.setdefault(cid, []).append(item.nodeid)
        for c in self.catalog.controls.values():
            state = "tests" if c.id in self.covered else "NO TESTS"
            title = c.title if not c.optional or "(optional)" in c.title else f"{c.title} (optional)"
            write(f"{c.id:<10} {state:<8} {c.severity_text():<14} {title}")
            write(f"{'':<20}{c.mapping_text()}")
            for nodeid in tests.get(c.id, []):
                write(f"{'':<20}- {nodeid}")

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        for cid in controls_of(item):
            item.user_properties.append(("control", cid))
            control = self.catalog.get(cid)
            if control is not None:  # JUnit properties: the catalog severity (and STIG category) of the control
                item.user_properties.extend(control.severity_json().items())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report: pytest.TestReport = yield
        if report.when == "call" and report.failed:
            message = call.excinfo.exconly() if call.excinfo is not None else report.longreprtext
            ids = {item.nodeid, without_target(item)}  # in a fleet, a waiver without [target] covers every target
            waiver = next((w for w in self.active for nodeid in ids if w.covers(controls_of(item), nodeid, message)),
                          None)
            if waiver is not None:
                reason = f"{waiver.control} waived: {waiver.describe()}"
                item.user_properties.append(("waiver", reason))
                report.outcome = "skipped"  # shown as xfail: the failure is known and accepted, until expiry
                report.wasxfail = reason
                setattr(report, "ztm_waiver", reason)  # noqa: B010  (travels to the xdist controller)
        if report.when == "teardown":
            recorder = item.stash.get(RECORDER, None)
            setattr(report, REPORT_ATTRIBUTE, recorder.items if recorder else [])
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # On the xdist controller nothing is collected: the reports say which controls were tested.
        self.covered.update(v for k, v in report.user_properties if k == "control")
        reason = getattr(report, "ztm_waiver", None)
        if reason:
            self.waived.append((report.nodeid, reason))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.waived:
            terminalreporter.section("ztm waivers", sep="-", yellow=True)
        for nodeid, reason in self.waived:
            terminalreporter.write_line(f"WAIVED {nodeid}: {reason}", yellow=True)
        for waiver in self.expired:
            terminalreporter.write_line(f"ztm: waiver for {waiver.control} expired on {waiver.expires} and was "
                                        "ignored", yellow=True)
        uncovered = [c for c in self.catalog.controls if c not in self.covered]
        if self.covered and uncovered and not (self.config.option.control or self.config.option.controls_list):
            terminalreporter.write_line(f"ztm: catalog controls without tests in this run: {', '.join(uncovered)}")

    # -- pytest-html columns (only called when pytest-html is active) --------------------
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, "<th>Controls</th>")
        cells.insert(3, "<th>Severity</th>")
        cells.insert(4, "<th>Mappings</th>")

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        from html import escape

        ids = [v for k, v in getattr(report, "user_properties", ()) if k == "control"]  # CollectReports too
        waiver = getattr(report, "ztm_waiver", None)
        maps = "; ".join(c.mapping_text() for i in ids if (c := self.catalog.get(i)))
        severity = ", ".join(c.severity_text() for i in ids if (c := self.catalog.get(i)))
        cells.insert(2, f"<td>{escape(', '.join(ids))}{'<br>WAIVED: ' + escape(waiver) if waiver else ''}</td>")
        cells.insert(3, f"<td>{escape(severity)}</td>")
        cells.insert(4, f"<td>{escape(maps)}</td>")


class SummaryLines:
    """The writers' lines, shown in the terminal summary after pytest's own newline (or at once if that has
    passed: the writers finish inside pytest_sessionfinish, which may run before or after the summary)."""

    config: pytest.Config
    _messages: list[tuple[str, dict[str, bool]]]
    _summarised: bool

    def _say(self, text: str, **markup: bool) -> None:
        """Shown in the terminal summary, after pytest's own newline (or at once if that has passed)."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and self._summarised:
            tr.write_line(text, **markup)
        else:
            self._messages.append((text, markup))

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self._summarised = True
        for text, markup in self._messages:
            terminalreporter.write_line(text, **markup)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # pytest skips the terminal summary for some exits (pytest.exit with its own code, --no-summary).
        if self._summarised or not self._messages:
            return
        tr = config.pluginmanager.get_plugin("terminalreporter")
        for text, markup in self._messages:
            if tr is not None:
                tr.write_line(text, **markup)
            else:
                print(text, file=sys.stderr)


class BundleWriter(SummaryLines):
    """Collects every report on the controller and writes the bundle at the very end."""

    def __init__(self, config: pytest.Config, gate: CatalogGate, out: Path, key: Path, cert: Path | None) -> None:
        self.config = config
        self.gate = gate
        self.catalog = gate.catalog
        self.waivers = gate.waivers
        self.key, self.cert = key, cert
        self.out = out
        html = config.option.evidence_html or str(out.with_name(out.name.removesuffix(".tar.gz").removesuffix(".tgz")
                                                                + ".html"))
        self.html_out = Path(html) if Path(html) != out else Path(f"{out}.html")  # never over the bundle
        self.hdf_out: Path | None = None  # --hdf: a copy of the bundle's hdf.json
        self.results: dict[str, TestResult] = {}
        self.worker_targets: dict[str, dict[str, Any]] = {}  # what xdist workers' fixtures read, by target name
        self.worker_kept_out: set[str] = set()
        self.redactions: list[str] = []  # what the secret scan removed before signing (assemble)
        self._messages: list[tuple[str, dict[str, bool]]] = []
        self._summarised = False
        self.started = datetime.now(UTC)
        self.workdir = Path(tempfile.mkdtemp(prefix="ztm-evidence-"))
        # JUnit and HTML reports go into the bundle: arrange them when the user did not ask.
        self._own_reports = False  # the report paths pytest prints are then temporary
        if not config.option.xmlpath:
            config.option.xmlpath = str(self.workdir / "junit.xml")
            self._own_reports = True
        if config.pluginmanager.hasplugin("html") and not getattr(config.option, "htmlpath", None):
            config.option.htmlpath = str(self.workdir / "report.html")
            self._own_reports = True
        if hasattr(config.option, "self_contained_html"):
            config.option.self_contained_html = True

    @property
    def covered(self) -> set[str]:
        return self.gate.covered

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        merge_worker(self, received(node))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # e.g. an unknown control id or an import error: the assessor must see it
            name = report.nodeid.split("::")[-1] or report.nodeid or "collection"
            result = self.results.setdefault(report.nodeid or "<collection>",
                                             TestResult(report.nodeid or "<collection>", name, []))
            result.outcome, result.message = "error", f"collection failed: {report.longreprtext}"[:4000]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record_report(self.results, report)


    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        outcome = yield  # JUnit and pytest-html write their files inside this call
        began = time.monotonic()
        if self.config.option.collectonly or self.config.option.controls_list:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return outcome  # nothing ran: no evidence to sign
        try:
            size = assemble(self, int(session.exitstatus))
        except UserError as exc:
            self._say(f"ztm evidence: no bundle written: {exc}", red=True, bold=True)
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        else:
            for finding in self.redactions:
                self._say(f"ztm evidence: redacted before signing: {finding} (a test output a secret; "
                          "see run.json 'redactions')", yellow=True)
            where = "; junit.xml and report.html are inside it, not at the temporary paths printed below"
            self._say(f"ztm evidence: signed bundle {self.out} ({size / 1024:.0f} KiB, {len(self.results)} tests, "
                      f"built in {time.monotonic() - began:.2f} s{where if self._own_reports else ''})")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return outcome


def merge_worker(writer: BundleWriter | HdfWriter, sent: dict[str, Any]) -> None:
    """What one finished xdist worker read of each target, and the values it kept out of the bundle."""
    for name, info in sent.get("targets", {}).items():
        known = writer.worker_targets.setdefault(name, {})
        for key, value in info.items():
            known.setdefault(key, value)
    writer.worker_kept_out.update(sent.get("kept_out", []))


class HdfWriter(SummaryLines):
    """``--hdf PATH`` without ``--evidence-out``: on the controller, the run's HDF and nothing else."""

    def __init__(self, config: pytest.Config, gate: CatalogGate, out: Path | None) -> None:
        self.config = config
        self.catalog = gate.catalog
        self.waivers = gate.waivers
        self.out = out
        self.results: dict[str, TestResult] = {}
        self.worker_targets: dict[str, dict[str, Any]] = {}  # what xdist workers' fixtures read, by target name
        self.worker_kept_out: set[str] = set()
        self.redactions: list[str] = []
        self.started = datetime.now(UTC)
        self._messages: list[tuple[str, dict[str, bool]]] = []
        self._summarised = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        merge_worker(self, received(node))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record_report(self.results, report)

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        outcome = yield
        if self.config.option.collectonly or self.out is None:
            return outcome
        try:
            documents = hdf_only(self)
            paths = hdf_paths(self.out, list(documents))
            for name, data in documents.items():
                paths[name].write_bytes(data)
        except UserError as exc:
            self._say(f"ztm evidence: no HDF written: {exc}", red=True, bold=True)
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return outcome
        except OSError as exc:
            self._say(f"ztm evidence: no HDF written to {self.out}: {exc.strerror}", red=True, bold=True)
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return outcome
        for finding in self.redactions:
            self._say(f"ztm evidence: redacted from the HDF: {finding} (a test output a secret)", yellow=True)
        for path in paths.values():
            self._say(f"ztm evidence: HDF (Heimdall Data Format) {path} ({len(self.results)} tests)")
        return outcome
