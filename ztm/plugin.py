"""The pytest plugin behind every control: --target and the shared fixtures.

Fixtures: ``target`` (the loaded target file), ``connect(role, **overrides)`` (pymysql over
mTLS with a verified server name, closed at session end), ``policy`` (the values controls judge
against: the target's profile and overrides), ``admin`` (the admin path, for
reading configuration), ``db_host`` (the testinfra host of the database server, ztm.fixtures_host) and
``tls_probe`` (the MySQL-protocol TLS scanner bound to the target).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pymysql
import pytest

from ztm.errors import UserError
from ztm.needs import Unmet
from ztm.policy import Policy, policy_for
from ztm.target import MissingInput, Target, load_target

# Fixture modules of the other control families, kept apart so each stays small.
pytest_plugins = ["ztm.fixtures_data", "ztm.fixtures_host"]

TARGET_INFO: pytest.StashKey[dict[str, Any]] = pytest.StashKey()
DEFAULT_LAB_TARGET = Path("lab/target.toml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ztm", "Zero-Trust MySQL target")
    group.addoption("--target", metavar="FILE", default=None,
                    help="target file (TOML); default $ZTM_TARGET, else lab/target.toml if the lab is up")


def target_path(config: pytest.Config) -> Path | None:
    value = config.getoption("target") or os.environ.get("ZTM_TARGET")
    if value:
        return Path(value)
    lab = Path(config.rootpath) / DEFAULT_LAB_TARGET
    return lab if lab.exists() else None


def target_info(config: pytest.Config) -> dict[str, Any]:
    """What the fixtures learnt about the target in this process (name, host, port, engine,
    target file, and server version once the admin path was opened); {} before that."""
    return dict(config.stash.get(TARGET_INFO, {}))


def pytest_configure(config: pytest.Config) -> None:
    """Registers the markers controls declare their inputs and applicability with.

    A target named on the command line (or $ZTM_TARGET) is checked once, here, before
    xdist starts any worker: a bad file is one usage line (exit 4), not every worker crashing."""
    config.addinivalue_line("markers", "needs(*inputs): target inputs the test needs ('roles.app', 'tls.ca', "
                            "'host', 'tenants', ...); without one it is not assessed, with the reason")
    config.addinivalue_line("markers", "applies(engine=None, version=None): engines (a name or a list) and a "
                            "minimum version the test applies to; elsewhere it is not applicable")
    value = config.getoption("target") or os.environ.get("ZTM_TARGET")
    if not value or hasattr(config, "workerinput") or getattr(config.option, "controls_list", False):
        return
    try:
        loaded = load_target(value)
        loaded.check_secret_files()
        policy_for(loaded)  # a bad [policy] too is one usage line before any worker starts
    except UserError as exc:
        raise pytest.UsageError(f"ztm: {exc}") from None


TARGET: pytest.StashKey[Target] = pytest.StashKey()
FACTS: pytest.StashKey[Any] = pytest.StashKey()
HOST: pytest.StashKey[Any] = pytest.StashKey()
SKIPPED_HERE: pytest.StashKey[bool] = pytest.StashKey()  # a test skipped by pytest_runtest_setup below


def _stop(config: pytest.Config, message: str) -> NoReturn:
    """A run that cannot start: one line and exit 4; in an xdist worker (where pytest.exit would
    crash the controller) each test fails with that line instead."""
    if hasattr(config, "workerinput"):
        raise Unmet(message)
    pytest.exit(message, returncode=4)


def loaded_target(config: pytest.Config) -> Target:
    """The target file of this run, loaded once per process (``_stop`` when there is none)."""
    if TARGET in config.stash:
        return config.stash[TARGET]
    path = target_path(config)
    if path is None:
        _stop(config, "ztm: no target: pass --target FILE (or run 'ztm lab up' to create lab/target.toml)")
    try:
        loaded = load_target(path)
        policy_for(loaded)  # a bad [policy] stops the run before any test, like a bad target
    except UserError as exc:
        _stop(config, f"ztm: {exc}")
    config.stash[TARGET] = loaded
    config.stash.setdefault(TARGET_INFO, {}).update(
        {"name": loaded.name, "host": loaded.host, "port": loaded.port, "engine": loaded.engine,
         "target_file": str(loaded.path)})
    return loaded


def preflight_facts(config: pytest.Config):
    """What the target offers (ztm.preflight), learnt once per process and recorded in run.json.
    The host is not tried here: db_host opens it when a host test runs, and records the outcome."""
    if FACTS not in config.stash:
        from ztm.preflight import preflight as learn

        facts = learn(loaded_target(config), host_check=False)
        config.stash[FACTS] = facts
        config.stash.setdefault(TARGET_INFO, {})["preflight"] = facts.to_dict()
    return config.stash[FACTS]


def database_host(config: pytest.Config):
    """The testinfra host of [host].spec, opened once per process when a host test first needs
    it (ztm.checks.host_spec); HostUnreachable, every time, when it cannot be. The outcome is
    recorded with the preflight facts."""
    from ztm.checks.host_spec import HostUnreachable, open_host

    if HOST not in config.stash:
        try:
            config.stash[HOST] = open_host(loaded_target(config).section("host")["spec"])
            fact = "ok"
        except HostUnreachable as exc:
            config.stash[HOST] = exc
            fact = str(exc)
        facts = preflight_facts(config)
        facts.host = fact
        config.stash.setdefault(TARGET_INFO, {})["preflight"] = facts.to_dict()
    opened = config.stash[HOST]
    if isinstance(opened, HostUnreachable):
        raise opened
    return opened


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    return loaded_target(pytestconfig)


@pytest.fixture(scope="session")
def preflight(target: Target, pytestconfig: pytest.Config):
    """What the target offers, learnt once (ztm.preflight) and recorded in run.json."""
    return preflight_facts(pytestconfig)


@pytest.fixture(scope="session")
def data_plane(target: Target, preflight) -> None:
    """Requested by module fixtures that read the data plane; ztm.needs (FIXTURE_NEEDS) judges
    it before they set up, this stays as their guard when used outside a control test."""
    from ztm.preflight import data_plane_problem

    problem = data_plane_problem(preflight, target.database)
    if problem and problem[0] == "skip":
        pytest.skip(problem[1])


@pytest.fixture(scope="session")
def policy(target: Target) -> Policy:
    """The policy in force (ztm.policy): a built-in profile tailored by the target's [policy]."""
    return policy_for(target)


@pytest.fixture(scope="session")
def admin(target: Target, pytestconfig: pytest.Config) -> Iterator[pymysql.connections.Connection]:
    """The admin path: reads configuration and grants. Also records the server's identity."""
    from ztm.db import connect

    try:
        conn = connect(target, target.role("admin"))
    except pymysql.MySQLError as exc:  # a finding of each test that reads through the admin path
        raise Unmet(f"cannot reach target {target.name} through the admin path: {exc.args[-1]}") from None
    except UserError as exc:
        raise Unmet(f"the admin path cannot be used: {exc}") from None
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        (version,) = cur.fetchone()
    pytestconfig.stash.setdefault(TARGET_INFO, {})["server_version"] = version
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def connect(target: Target) -> Iterator[Callable[..., pymysql.connections.Connection]]:
    """``connect(role, **overrides)``: a new connection as a target role (see ztm.db.connect)."""
    from ztm.db import connect as _connect

    opened: list[pymysql.connections.Connection] = []

    def factory(role: str, **overrides: Any) -> pymysql.connections.Connection:
        conn = _connect(target, target.role(role), **overrides)
        opened.append(conn)
        return conn

    yield factory
    for conn in opened:
        if conn.open:
            conn.close()


@pytest.fixture(scope="session")
def tls_probe(target: Target):
    """The MySQL-protocol TLS scanner bound to the target (address, CA, server name)."""
    from ztm import tls_scan

    def scan(**kwargs: Any):
        kwargs.setdefault("deadline", tls_scan.SCAN_DEADLINE)  # a stalling server makes probes inconclusive
        return tls_scan.scan(target.host, target.port, ca=target.ca, server_name=target.verify_name, **kwargs)

    return scan


# -- Inputs, applicability and driver errors: one sentence per test, never a traceback -------

def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("-")[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def inapplicable(target: Target, engine: str | list[str] | None, version: str | None,
                 server_version: str | None) -> str | None:
    """Why a test marked ``applies(engine=, version=)`` does not apply to the target, or None."""
    engines = [engine] if isinstance(engine, str) else list(engine or [])
    if engines and target.engine not in engines:
        return f"not applicable: applies to {' and '.join(engines)} only, the target is {target.engine}"
    if version and server_version and _version_tuple(server_version) < _version_tuple(version):
        return f"not applicable: applies to {target.engine} {version} and later, the server is {server_version}"
    return None


def _own_fixtures(item: pytest.Item) -> list[str]:
    """The fixtures of the test's closure that are this plugin's (a conftest may override one)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [name for name, defs in info.name2fixturedefs.items()
            if defs and getattr(defs[-1].func, "__module__", "").startswith("ztm.")]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Applies the ``applies`` and ``needs`` markers and the needs of the test's fixtures
    (ztm.needs) before any fixture touches the target: not applicable, not assessed, or failed
    with one sentence. A plain hook: it runs after the evidence plugin's (registered later, so
    called first) and before pytest's own, which sets the fixtures up."""
    from ztm.needs import declared, unmet

    markers = [m.args for m in item.iter_markers("needs")]
    applies = [m.kwargs for m in item.iter_markers("applies")]
    if not markers and not applies and item.get_closest_marker("control") is None:
        return
    params = getattr(getattr(item, "callspec", None), "params", {})
    needs = declared(markers, _own_fixtures(item), params)
    if not needs and not applies:
        return
    target = loaded_target(item.config)
    for spec in applies:
        server_version = (target_info(item.config).get("server_version")
                          or (preflight_facts(item.config).server_version or "").removeprefix("5.5.5-")
                          or (target.version or "").lstrip(">="))  # the greeting's, else the target file's
        reason = inapplicable(target, spec.get("engine"), spec.get("version"), server_version or None)
        if reason:
            item.stash[SKIPPED_HERE] = True
            pytest.skip(reason)
    if not needs:
        return
    if "host" in needs and target.section("host").get("spec"):
        from ztm.checks.host_spec import HostUnreachable

        with contextlib.suppress(HostUnreachable):  # recorded in the facts: unmet() names it
            database_host(item.config)
    verdict = unmet(target, preflight_facts(item.config), needs)
    if verdict and verdict[0] == "skip":
        item.stash[SKIPPED_HERE] = True  # reported at the test, not at this hook
        pytest.skip(verdict[1])
    if verdict:
        raise Unmet(verdict[1])


DRIVER_CAUSES = {
    1045: "the server refused the login (access denied)",
    1044: "the account may not use the database",
    1049: "the database does not exist on the server",
    1146: "a table of the data plane does not exist (is the data plane installed?)",
    1305: "a procedure of the data plane does not exist (is the data plane installed?)",
    2003: "the server cannot be reached over TCP",
    2013: "the server closed the connection",
    2026: "the TLS handshake failed (does the server offer TLS?)",
    3159: "the server requires a secure transport",
}


def driver_finding(exc: BaseException, where: str) -> str:
    """One sentence for a database driver error that no control turned into a finding."""
    args = getattr(exc, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    detail = str(args[1]) if len(args) > 1 else str(exc)
    cause = DRIVER_CAUSES.get(errno or 0, "the database refused or dropped a probe")
    return f"{where}: {cause} (MySQL error {errno}: {' '.join(detail.split())[:300]})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """An Unmet prerequisite becomes the test's failure, a MissingInput a skip (not assessed),
    each with its sentence; a driver error that reached pytest becomes that one sentence
    instead of a pymysql traceback."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    excinfo = call.excinfo
    if report.skipped and item.stash.get(SKIPPED_HERE, False) and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.path), item.location[1] or 0, report.longrepr[2])
    if excinfo is None or not report.failed:
        return
    if excinfo.errisinstance((Unmet, UserError)):
        # A prerequisite the target lacks (or an input of it that cannot be used: a secret's
        # variable unset) is the test's finding, wherever it was found: a failure, not a
        # pytest error, even when a fixture raised it while setting up.
        report.when = "call"
        report.longrepr = excinfo.value.reason if isinstance(excinfo.value, Unmet) else str(excinfo.value)
    elif excinfo.errisinstance(MissingInput):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {excinfo.value.reason}")
    elif excinfo.errisinstance(pymysql.MySQLError):
        where = item.name if call.when == "call" else f"{item.name} ({call.when})"
        report.longrepr = driver_finding(excinfo.value, where)
