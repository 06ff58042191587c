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

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from ztm.errors import UserError
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


def _stop(config: pytest.Config, message: str) -> None:
    """A target that cannot be assessed: with one target in one process the run ends (exit 4);
    in a fleet or an xdist worker (where pytest.exit crashes the worker) the target's own tests
    fail with this sentence and the other targets are assessed."""
    if fleet(config) or hasattr(config, "workerinput"):
        pytest.fail(message, pytrace=False)
    pytest.exit(message, returncode=4)


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
            if members:  # in a fleet a bad [policy] is a usage error too, before any worker starts
                policy_for(loaded)
    except UserError as exc:
        raise pytest.UsageError(f"ztm: {exc}") from None
    if members:
        _one_worker_per_target(config, members)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Target:
    """The target of the test: the run's only target, or in a fleet the one of the test's parameter."""
    path = Path(request.param) if hasattr(request, "param") else target_path(pytestconfig)
    if path is None:
        _stop(pytestconfig, "ztm: no target: pass --target FILE (or run 'ztm lab up' to create lab/target.toml)")
    try:
        loaded = load_target(path)
        policy_for(loaded)  # a bad [policy] stops the run before any test, like a bad target
    except UserError as exc:
        _stop(pytestconfig, f"ztm: {exc}")
    _info(pytestconfig, loaded).update({"name": loaded.name, "host": loaded.host, "port": loaded.port,
                                        "engine": loaded.engine, "target_file": str(loaded.path)})
    return loaded


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """In a fleet each test names its target (a JUnit property; the bundle groups results by it)."""
    members = fleet(item.config)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if members and "target" in params:
        name = next((n for n, p in members if str(p) == params["target"]), None)
        if name:
            item.user_properties.append(("target", name))


@pytest.fixture(scope="session")
def preflight(target: Target, pytestconfig: pytest.Config):
    """What the target offers, learnt once (ztm.preflight) and recorded in run.json."""
    from ztm.preflight import preflight as learn

    facts = learn(target)
    _info(pytestconfig, target)["preflight"] = facts.to_dict()
    return facts


@pytest.fixture(scope="session")
def data_plane(target: Target, preflight) -> None:
    """Requested by module fixtures that read the data plane (they set up before the autouse
    check of ``needs("data_plane")``): a target without a data plane makes them not assessed."""
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
    except pymysql.err.OperationalError as exc:
        _stop(pytestconfig, f"ztm: cannot reach target {target.name} through the admin path: {exc.args[-1]}")
    except UserError as exc:
        _stop(pytestconfig, f"ztm: {exc}")
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

def missing_inputs(target: Target, needs: tuple[str, ...] | list[str]) -> list[str]:
    """The inputs of ``needs`` ('roles.app', 'tls.ca', 'host', 'tenants', ...) the target lacks."""
    missing = []
    for need in needs:
        section, _, key = need.partition(".")
        if section == "roles":
            present = key in target.roles
        elif need == "tls.ca":
            present = target.ca is not None
        else:
            value = target.section(section)
            present = bool(value) and (not key or key in value)
        if not present:
            missing.append(need)
    return missing


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


@pytest.fixture(autouse=True)
def _ztm_declared_inputs(request: pytest.FixtureRequest) -> None:
    """Applies the ``needs`` and ``applies`` markers before a test touches the target."""
    needs = tuple(n for m in request.node.iter_markers("needs") for n in m.args)
    applies = [m.kwargs for m in request.node.iter_markers("applies")]
    if not needs and not applies:
        return
    target: Target = request.getfixturevalue("target")
    server_version = (target_info(request.config, target.name).get("server_version")
                      or (target.version or "").lstrip(">="))
    for spec in applies:
        reason = inapplicable(target, spec.get("engine"), spec.get("version"), server_version or None)
        if reason:
            pytest.skip(reason)
    missing = missing_inputs(target, [n for n in needs if n != "data_plane"])
    if missing:
        pytest.skip("not assessed: " + "; ".join(_need_reason(target, need) for need in missing))
    if "data_plane" in needs:
        from ztm.preflight import data_plane_problem

        problem = data_plane_problem(request.getfixturevalue("preflight"), target.database)
        if problem and problem[0] == "skip":
            pytest.skip(problem[1])
        if problem:
            pytest.fail(problem[1], pytrace=False)


def _need_reason(target: Target, need: str) -> str:
    try:
        if need.startswith("roles."):
            target.role(need.removeprefix("roles."))
        elif need == "tls.ca":
            target.need_ca()
    except MissingInput as exc:
        return exc.reason.removeprefix("not assessed: ")
    return f"the target names no [{need}]"


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
    """A MissingInput becomes a skip (not assessed) with its sentence; a driver error that
    reached pytest becomes that one sentence instead of a pymysql traceback."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    excinfo = call.excinfo
    if excinfo is None or not report.failed:
        return
    if excinfo.errisinstance(MissingInput):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {excinfo.value.reason}")
    elif excinfo.errisinstance(pymysql.MySQLError):
        where = item.name if call.when == "call" else f"{item.name} ({call.when})"
        report.longrepr = driver_finding(excinfo.value, where)
