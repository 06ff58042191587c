"""Pid files checked against /proc: a zombie, a reused pid or garbage never counts as running.

Real processes; every wait polls for its exact condition with a long deadline (CI shares
two cores with other jobs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from provision import procs

DEADLINE = 60.0


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE:.0f} s: {what}"
        time.sleep(0.05)


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen, str]]:
    marker = f"ztm-test-{uuid.uuid4()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
    yield proc, marker
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=DEADLINE)


def test_our_running_process_counts(tmp_path, sleeper):
    proc, marker = sleeper
    procs.write_pid_file(tmp_path / "p.pid", proc.pid)
    assert (tmp_path / "p.pid").read_text().split()[0] == str(proc.pid)
    # Popen returns after the exec, so this holds at once; polled all the same.
    eventually(lambda: procs.read_pid_file(tmp_path / "p.pid", (marker,)) == proc.pid, "the sleeper is seen")


def test_a_reused_pid_does_not_count(tmp_path, sleeper):
    _, marker = sleeper
    (tmp_path / "p.pid").write_text(f"{os.getpid()} {procs.start_time(os.getpid())}\n")  # another command
    assert procs.read_pid_file(tmp_path / "p.pid", (marker,)) is None
    assert procs.read_pid_file(tmp_path / "p.pid") == os.getpid()  # without markers, the start time decides


def test_a_different_start_time_does_not_count(tmp_path, sleeper):
    proc, marker = sleeper
    started = procs.start_time(proc.pid)
    assert started is not None
    (tmp_path / "p.pid").write_text(f"{proc.pid} {started + 1}\n")
    assert procs.read_pid_file(tmp_path / "p.pid", (marker,)) is None


def test_a_dead_unreaped_process_does_not_count(tmp_path, sleeper):
    proc, marker = sleeper
    procs.write_pid_file(tmp_path / "p.pid", proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    # Not reaped: the pid still exists as a zombie, which kill(pid, 0) would call alive.
    eventually(lambda: procs.read_pid_file(tmp_path / "p.pid", (marker,)) is None, "the zombie is not running")
    os.kill(proc.pid, 0)  # the naive check is fooled
    proc.wait(timeout=DEADLINE)
    assert procs.read_pid_file(tmp_path / "p.pid", (marker,)) is None


@pytest.mark.parametrize("content", ["", "garbage\n", "-1 5\n", "0 0\n"])
def test_garbage_pid_files_do_not_count(tmp_path, content):
    (tmp_path / "p.pid").write_text(content)
    assert procs.read_pid_file(tmp_path / "p.pid", ("x",)) is None


def test_missing_pid_file_and_bare_pid_without_markers(tmp_path):
    assert procs.read_pid_file(tmp_path / "none.pid") is None
    (tmp_path / "p.pid").write_text(f"{os.getpid()}\n")
    assert procs.read_pid_file(tmp_path / "p.pid") is None  # nothing to tell it from a reused pid


def test_terminate_stops_and_reaps(sleeper):
    proc, marker = sleeper
    procs.terminate(proc.pid)
    assert not procs.is_running(proc.pid, (marker,))
    assert proc.poll() is not None  # reaped by terminate, exit status collected


def test_a_process_switching_programs_is_still_seen():
    """Checked at once after start, while 'sh' execs into python (as 'ip netns exec' does): the
    kernel shows an empty command line for a moment mid-exec, which must not read as 'not ours'."""
    for _ in range(30):
        marker = f"ztm-test-{uuid.uuid4()}"
        proc = subprocess.Popen(["sh", "-c", f'exec "{sys.executable}" -c "import time; time.sleep(600)" {marker}'])
        try:
            assert procs.is_running(proc.pid, (marker,), procs.start_time(proc.pid))
        finally:
            proc.kill()
            proc.wait(timeout=DEADLINE)
