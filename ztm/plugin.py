"""The pytest plugin behind every control: --target and the shared fixtures.

Fixtures: ``target`` (the loaded target file), ``connect(role, **overrides)`` (pymysql over
mTLS with a verified server name, closed at session end), ``policy`` (the values controls judge
against: the target's profile and overrides), ``admin`` (the admin path, for
reading configuration), ``db_host`` (the testinfra host of the database server, ztm.fixtures_host) and
``tls_probe`` (the MySQL-protocol TLS scanner bound to the target).

A fleet: ``--target`` given more than once parametrizes every test that uses the target with
one session-scoped parameter per target file (``pytest_generate_tests``), so each target's
fixtures (policy, connections, preflight, host) are its own and the test ids carry the
target's name (``test_x[ztm-lab-mariadb]``). One target keeps plain ids. Under a fleet or
xdist, a target that cannot be reached fails its own tests (one sentence) instead of ending
the run.
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
from ztm.target import MissingInput, Target, load_target, read_target_file

# Fixture modules of the other control families, kept apart so each stays small.
pytest_plugins = ["ztm.fixtures_data", "ztm.fixtures_host"]

TARGET_INFO: pytest.StashKey[dict[str, dict[str, Any]]] = pytest.StashKey()  # per target name
FLEET: pytest.StashKey[list[tuple[str, Path]]] = pytest.StashKey()
DEFAULT_LAB_TARGET = Path("lab/target.toml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ztm", "Zero-Trust MySQL target")
    group.addoption("--target", metavar="FILE", action="append", default=[],
                    help="target file (TOML); repeat it to assess a fleet in one run (every test once per target, "
                         "its id naming the target); default $ZTM_TARGET, else lab/target.toml if the lab is up")


def target_paths(config: pytest.Config) -> list[Path]:
    """Every target file of the run: the --target options, else $ZTM_TARGET, else the lab's."""
    values = config.getoption("target") or []
    if values:
        return [Path(v) for v in values]
    if os.environ.get("ZTM_TARGET"):
        return [Path(os.environ["ZTM_TARGET"])]
    lab = Path(config.rootpath) / DEFAULT_LAB_TARGET
    return [lab] if lab.exists() else []


def target_path(config: pytest.Config) -> Path | None:
    """The run's target file, the first one of a fleet (None without any)."""
    paths = target_paths(config)
    return paths[0] if paths else None


def fleet(config: pytest.Config) -> list[tuple[str, Path]]:
    """(name, file) of every target when the run assesses more than one; [] for one target.

    Names come from each file's [target].name and must differ (they are the test ids)."""
    if FLEET in config.stash:
        return config.stash[FLEET]
    paths = target_paths(config)
    members: list[tuple[str, Path]] = []
    if len(paths) > 1:
        for path in paths:
            try:
                name = str(read_target_file(path)["target"]["name"])
            except (UserError, KeyError, TypeError) as exc:
                raise UserError(f"target file {path}: no [target].name to tell it apart in the fleet ({exc})") from None
            if name in [n for n, _ in members]:
                raise UserError(f"two targets of the fleet are named {name!r} ({path} and "
                                f"{dict(members)[name]}): give each target file its own [target].name")
            members.append((name, path))
    config.stash[FLEET] = members
    return members


def target_info(config: pytest.Config, name: str | None = None) -> dict[str, Any]:
    """What the fixtures learnt about a target in this process (name, host, port, engine,
    target file, and server version once the admin path was opened); {} before that.
    Without ``name``: the only target, or {} when none or several were read."""
    known = config.stash.get(TARGET_INFO, {})
    if name is None:
        return dict(next(iter(known.values()))) if len(known) == 1 else {}
    return dict(known.get(name, {}))


def targets_info(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """What the fixtures learnt about every target, by target name."""
    return {name: dict(info) for name, info in config.stash.get(TARGET_INFO, {}).items()}


def _info(config: pytest.Config, target: Target) -> dict[str, Any]:
    return config.stash.setdefault(TARGET_INFO, {}).setdefault(target.name, {})


def without_target(item: pytest.Item) -> str:
    """The test's node id as a one-target run names it: in a fleet the target's name is taken out
    of the id (``t[db-a]`` -> ``t``, ``t[db-a-app]`` -> ``t[app]``); otherwise the node id."""
    members = fleet(item.config)
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = next((n for n, p in members if str(p) == params.get("target")), None)
    if name is None:
        return item.nodeid
    head, _, ids = item.nodeid.rpartition("[")
    rest = ids.removesuffix("]").removeprefix(name).removeprefix("-")
    return f"{head}[{rest}]" if rest else head


def _one_worker_per_target(config: pytest.Config, members: list[tuple[str, Path]]) -> None:
    """A fleet runs under xdist with at least one worker per target (ztm.fleet_xdist says why).
    Done before xdist's own (trylast) pytest_configure starts its session; -n 0 is respected."""
    given = getattr(config.option, "numprocesses", 0)
    if config.option.collectonly or getattr(config.option, "controls_list", False) or given == 0 \
            or not (given is None or (isinstance(given, int) and given < len(members))):
        return
    config.option.numprocesses = len(members)
    config.option.tx = ["popen"] * len(members)
    if config.option.dist == "no":
        config.option.dist = "load"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any):
    members = fleet(config)
    if not members:
        return None
    from ztm.fleet_xdist import TargetScheduling

    return TargetScheduling(config, log, [name for name, _ in members])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    members = fleet(metafunc.config)
    if not members:
        return
    declared = any(metafunc.definition.iter_markers(m) for m in ("needs", "applies"))
    if "target" not in metafunc.fixturenames:
        if not declared:
            return
        metafunc.fixturenames.append("target")  # the autouse input check reads the target of the test
    metafunc.parametrize("target", [str(p) for _, p in members], indirect=True, scope="session",
                         ids=[n for n, _ in members])


def pytest_configure(config: pytest.Config) -> None:
    """Registers the markers controls declare their inputs and applicability with.

    A target named on the command line (or $ZTM_TARGET) is checked once, here, before
    xdist starts any worker: a bad file is one usage line (exit 4), not every worker crashing."""
    config.addinivalue_line("markers", "needs(*inputs): target inputs the test needs ('roles.app', 'tls.ca', "
                            "'host', 'tenants', ...); without one it is not assessed, with the reason")
    config.addinivalue_line("markers", "applies(engine=None, version=None): engines (a name or a list) and a "
                            "minimum version the test applies to; elsewhere it is not applicable")
    named = config.getoption("target") or os.environ.get("ZTM_TARGET")
    if not named or hasattr(config, "workerinput") or getattr(config.option, "controls_list", False):
        return
    try:
        members = fleet(config)
        for path in target_paths(config):
            loaded = load_target(path)
            loaded.check_secret_files()
            policy_for(loaded)  # a bad [policy] too is one usage line before any worker starts
    except UserError as exc:
        raise pytest.UsageError(f"ztm: {exc}") from None
    if members:
        _one_worker_per_target(config, members)


TARGETS: pytest.StashKey[dict[str, Target]] = pytest.StashKey()  # by target file
FACTS: pytest.StashKey[dict[str, Any]] = pytest.StashKey()  # preflight facts by target name
HOSTS: pytest.StashKey[dict[str, Any]] = pytest.StashKey()  # opened host (or why not) by target name
SKIPPED_HERE: pytest.StashKey[bool] = pytest.StashKey()  # a test skipped by pytest_runtest_setup below


def _stop(config: pytest.Config, message: str) -> NoReturn:
    """A target that cannot be assessed: with one target in one process the run ends (exit 4);
    in a fleet or an xdist worker (where pytest.exit would crash the worker) the target's own
    tests fail with this sentence and the other targets are assessed."""
    if fleet(config) or hasattr(config, "workerinput"):
        raise Unmet(message)
    pytest.exit(message, returncode=4)


def item_target_path(item: pytest.Item) -> Path | None:
    """The target file of a test: in a fleet its parameter's, otherwise the run's only one."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return Path(params["target"]) if "target" in params else target_path(item.config)


def loaded_target(config: pytest.Config, path: Path | None = None) -> Target:
    """A target file of this run (default: the only one), loaded once per process (``_stop``
    when there is none or it cannot be used)."""
    path = path if path is not None else target_path(config)
    if path is None:
        _stop(config, "ztm: no target: pass --target FILE (or run 'ztm lab up' to create lab/target.toml)")
    loaded_by_file = config.stash.setdefault(TARGETS, {})
    if str(path) in loaded_by_file:
        return loaded_by_file[str(path)]
    try:
        loaded = load_target(path)
        policy_for(loaded)  # a bad [policy] stops the run before any test, like a bad target
    except UserError as exc:
        _stop(config, f"ztm: {exc}")
    loaded_by_file[str(path)] = loaded
    _info(config, loaded).update({"name": loaded.name, "host": loaded.host, "port": loaded.port,
                                  "engine": loaded.engine, "target_file": str(loaded.path)})
    return loaded


def preflight_facts(config: pytest.Config, target: Target):
    """What the target offers (ztm.preflight), learnt once per process and recorded in run.json.
    The host is not tried here: db_host opens it when a host test runs, and records the outcome."""
    known = config.stash.setdefault(FACTS, {})
    if target.name not in known:
        from ztm.preflight import preflight as learn

        known[target.name] = learn(target, host_check=False)
        _info(config, target)["preflight"] = known[target.name].to_dict()
    return known[target.name]


def database_host(config: pytest.Config, target: Target):
    """The testinfra host of the target's [host].spec, opened once per process when a host test
    first needs it (ztm.checks.host_spec); HostUnreachable, every time, when it cannot be. The
    outcome is recorded with the preflight facts."""
    from ztm.checks.host_spec import HostUnreachable, open_host

    hosts = config.stash.setdefault(HOSTS, {})
    if target.name not in hosts:
        try:
            hosts[target.name] = open_host(target.section("host")["spec"])
            fact = "ok"
        except HostUnreachable as exc:
            hosts[target.name] = exc
            fact = str(exc)
        facts = preflight_facts(config, target)
        facts.host = fact
        _info(config, target)["preflight"] = facts.to_dict()
    opened = hosts[target.name]
    if isinstance(opened, HostUnreachable):
        raise opened
    return opened


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Target:
    """The target of the test: the run's only target, or in a fleet the one of the test's parameter."""
    return loaded_target(pytestconfig, Path(request.param) if hasattr(request, "param") else None)


@pytest.fixture(scope="session")
def preflight(target: Target, pytestconfig: pytest.Config):
    """What the target offers, learnt once (ztm.preflight) and recorded in run.json."""
    return preflight_facts(pytestconfig, target)


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
    _info(pytestconfig, target)["server_version"] = version
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
    called first) and before pytest's own, which sets the fixtures up. In a fleet each test
    first names its target (a JUnit property; the bundle groups results by it)."""
    from ztm.needs import declared, unmet

    params = getattr(getattr(item, "callspec", None), "params", {})
    members = fleet(item.config)
    if members and "target" in params:
        name = next((n for n, p in members if str(p) == params["target"]), None)
        if name:
            item.user_properties.append(("target", name))
    markers = [m.args for m in item.iter_markers("needs")]
    applies = [m.kwargs for m in item.iter_markers("applies")]
    if not markers and not applies and item.get_closest_marker("control") is None:
        return
    needs = declared(markers, _own_fixtures(item), params)
    if not needs and not applies:
        return
    target = loaded_target(item.config, item_target_path(item))
    for spec in applies:
        server_version = (target_info(item.config, target.name).get("server_version")
                          or (preflight_facts(item.config, target).server_version or "").removeprefix("5.5.5-")
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
            database_host(item.config, target)
    verdict = unmet(target, preflight_facts(item.config, target), needs)
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
