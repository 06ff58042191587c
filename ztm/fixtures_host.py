"""Pytest fixtures for the host controls (registered by ztm.plugin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ztm.netprobe import Verdict, run_from


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


@pytest.fixture(scope="session")
def host_netns_argv(target) -> list[str]:
    """argv prefix to run a command in the database host's network namespace (lab), or nothing."""
    netns = target.section("host").get("netns")
    return ["ip", "netns", "exec", netns] if netns else []
