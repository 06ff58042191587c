"""Pytest fixtures for the host controls (registered by ztm.plugin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ztm.checks.host_spec import HostUnreachable
from ztm.needs import Unmet
from ztm.netprobe import Verdict, run_from
from ztm.plugin import database_host


@pytest.fixture(scope="session")
def db_host(target, pytestconfig):
    """The testinfra host of the database server: the target's [host].spec and nothing else.

    Named ``db_host`` (not testinfra's ``host``) and testinfra's own plugin is disabled
    (pytest.ini), so it can neither be shadowed nor parametrized over the assessor's machine.
    Without [host] the host controls are not assessed; an unreachable spec fails each of them,
    naming the host (pytest caches the failure: the host is tried once per session)."""
    spec = target.section("host").get("spec")
    if not spec:
        pytest.skip("not assessed: the target has no [host] section, so there is no database host to examine "
                    "(host checks never run on the assessor's machine unless [host].spec says local://)")
    try:
        return database_host(pytestconfig, target)
    except HostUnreachable as exc:
        raise Unmet(str(exc)) from None  # each host test's failure (not a pytest error)


@pytest.fixture(scope="session")
def network(target) -> dict:
    section = target.section("network")
    if not section:
        pytest.skip("the target has no [network] section: firewall probes need the allowlisted and intruder "
                    "addresses")
    return section


@pytest.fixture(scope="session")
def from_netns() -> Callable[..., Verdict]:
    """``from_netns(netns, probe, *args)``: run a ztm.netprobe probe inside a lab namespace
    (the intruder, the log host); None runs it here, on the assessor. Returns its Verdict:
    reachable, blocked, or could not run (see ztm.netprobe for what counts as which)."""
    return run_from
