"""Pytest fixtures for the host controls (registered by ztm.plugin)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    said: str


@pytest.fixture(scope="session")
def network(target) -> dict:
    section = target.section("network")
    if not section:
        pytest.skip("the target has no [network] section: firewall probes need the allowlisted and intruder "
                    "addresses")
    return section


@pytest.fixture(scope="session")
def from_netns() -> Callable[..., ProbeResult]:
    """``from_netns(netns, probe, *args)``: run a ztm.netprobe probe inside a lab namespace
    (the intruder, the log host). None as netns runs it here, on the assessor."""

    def run(netns: str | None, *args: str) -> ProbeResult:
        argv = [sys.executable, "-m", "ztm.netprobe", *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return ProbeResult(done.returncode == 0, (done.stdout + done.stderr).strip()[-300:])

    return run


@pytest.fixture(scope="session")
def host_netns_argv(target) -> list[str]:
    """argv prefix to run a command in the database host's network namespace (lab), or nothing."""
    netns = target.section("host").get("netns")
    return ["ip", "netns", "exec", netns] if netns else []
