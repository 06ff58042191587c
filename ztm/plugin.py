"""The pytest plugin behind every control: --target and the shared fixtures.

Fixtures: ``target`` (the loaded target file), ``connect(role, **overrides)`` (pymysql over
mTLS with a verified server name, closed at session end), ``policy`` (the values controls judge
against: the target's profile and overrides), ``admin`` (the admin path, for
reading configuration), ``db_host`` (the testinfra host of the database server, ztm.fixtures_host) and
``tls_probe`` (the MySQL-protocol TLS scanner bound to the target).
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
from ztm.target import Target, load_target

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
    """A target named on the command line (or $ZTM_TARGET) is checked once, here, before
    xdist starts any worker: a bad file is one usage line (exit 4), not every worker crashing."""
    value = config.getoption("target") or os.environ.get("ZTM_TARGET")
    if not value or hasattr(config, "workerinput") or getattr(config.option, "controls_list", False):
        return
    try:
        load_target(value).check_secret_files()
    except UserError as exc:
        raise pytest.UsageError(f"ztm: {exc}") from None


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    path = target_path(pytestconfig)
    if path is None:
        pytest.exit("ztm: no target: pass --target FILE (or run 'ztm lab up' to create lab/target.toml)", returncode=4)
    try:
        loaded = load_target(path)
        policy_for(loaded)  # a bad [policy] stops the run before any test, like a bad target
    except UserError as exc:
        pytest.exit(f"ztm: {exc}", returncode=4)
    pytestconfig.stash[TARGET_INFO] = {"name": loaded.name, "host": loaded.host, "port": loaded.port,
                                       "engine": loaded.engine, "target_file": str(loaded.path)}
    return loaded


@pytest.fixture(scope="session")
def policy(target: Target) -> Policy:
    """The policy in force (ztm.policy): a built-in profile tailored by the target's [policy]."""
    return policy_for(target)


@pytest.fixture(scope="session")
def admin(target: Target, pytestconfig: pytest.Config) -> Iterator[pymysql.connections.Connection]:
    """The admin path: reads configuration and grants. Also records the server's identity."""
    from ztm.db import connect

    try:
        conn = connect(target, target.roles["admin"])
    except pymysql.err.OperationalError as exc:
        pytest.exit(f"ztm: cannot reach target {target.name} through the admin path: {exc.args[-1]}", returncode=4)
    except UserError as exc:
        pytest.exit(f"ztm: {exc}", returncode=4)
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        (version,) = cur.fetchone()
    pytestconfig.stash[TARGET_INFO]["server_version"] = version
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def connect(target: Target) -> Iterator[Callable[..., pymysql.connections.Connection]]:
    """``connect(role, **overrides)``: a new connection as a target role (see ztm.db.connect)."""
    from ztm.db import connect as _connect

    opened: list[pymysql.connections.Connection] = []

    def factory(role: str, **overrides: Any) -> pymysql.connections.Connection:
        conn = _connect(target, target.roles[role], **overrides)
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
        return tls_scan.scan(target.host, target.port, ca=target.ca, server_name=target.server_name, **kwargs)

    return scan
