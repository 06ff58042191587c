"""Lab fixtures for the project's own integration and sensitivity tests.

The lab is brought up once per session (``ztm lab up`` is idempotent and fast when warm);
the engine comes from $ZTM_ENGINE (mariadb by default), so one tox env runs each engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from provision import lab as lab_mod
from provision import netns
from tests.control_runner import ControlRun, run_control
from tests.lab.admin_sql import sql_change


@pytest.fixture(scope="session")
def lab() -> lab_mod.Lab:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, firewall, server processes); run the tests as root")
    the_lab = lab_mod.Lab(lab_mod.default_lab_dir())
    lab_mod.up(the_lab, os.environ.get("ZTM_ENGINE", "mariadb"))
    return the_lab


@pytest.fixture(scope="session")
def lab_target(lab):
    from ztm.target import load_target

    return load_target(lab.target_file)


@pytest.fixture
def control(lab) -> Callable[..., ControlRun]:
    """``control("ZTM-TLS-1")`` runs that control's module against the lab, in a new process."""
    return lambda *ids, **kw: run_control(lab.target_file, *ids, **kw)


@pytest.fixture
def admin_change(lab) -> Callable[..., object]:
    """Apply SQL as the break-glass admin and undo it afterwards, even if the test fails."""
    return sql_change(lab)


@pytest.fixture
def stray_listener(lab) -> Iterator[int]:
    """A TCP listener on port 5555 in the database host's namespace, for the test's duration."""
    listener = subprocess.Popen(netns.in_netns(netns.DB.netns, [
        sys.executable, "-c", "import socket, time; s = socket.create_server(('0.0.0.0', 5555)); time.sleep(600)"]))
    try:
        deadline = time.monotonic() + 60
        while ":5555 " not in subprocess.run(netns.in_netns(netns.DB.netns, ["ss", "-H", "-ltn"]),
                                             capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline and listener.poll() is None, "the stray listener did not start"
            time.sleep(0.2)
        yield 5555
    finally:
        listener.kill()
        listener.wait()


@pytest.fixture
def envelope(lab_target):
    """The lab's envelope client (its KMS session closed after the test)."""
    from envelope.setup import client_for

    client = client_for(lab_target)
    yield client
    client.kms.close()
