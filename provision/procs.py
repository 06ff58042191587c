"""Pid files that cannot lie: a pid counts as "ours and running" only if /proc agrees.

A bare ``kill(pid, 0)`` is fooled three ways: the process died but is an unreaped zombie,
the pid was reused by an unrelated process (after a reboot, or a long time), or the pid
file is stale garbage. So a pid file holds the pid *and* the process start time (which
survives exec but not reuse), and the reader also checks the command line for markers
only our process carries (e.g. its lab folder), and that the process is not a zombie.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
    return text[text.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """Clock ticks after boot at which ``pid`` started (field 22 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_running(pid: int, markers: tuple[str, ...] = (), started: int | None = None,
               exec_wait: float = 10.0) -> bool:
    """``pid`` is alive (not a zombie), started at ``started`` (if given), and every marker
    appears in its command line.

    While a process is in the middle of exec (e.g. 'ip netns exec' turning into the program
    it runs), the kernel shows an empty command line for a moment: that means "ask again",
    not "another process", so an empty one is re-read for up to ``exec_wait`` seconds."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X", "x"):
        return False
    if started is not None and start_time(pid) != started:
        return False
    if not markers:
        return True
    deadline = time.monotonic() + exec_wait
    argv = command_line(pid)
    while not argv and time.monotonic() < deadline and _stat_fields(pid):
        time.sleep(0.01)
        argv = command_line(pid)
    joined = " ".join(argv)
    return all(marker in joined for marker in markers) and is_running(pid, (), started)


def write_pid_file(path: Path, pid: int) -> None:
    path.write_text(f"{pid} {start_time(pid) or 0}\n")


def read_pid_file(path: Path, markers: tuple[str, ...] = ()) -> int | None:
    """The pid in ``path`` if that very process still runs; None otherwise."""
    try:
        parts = path.read_text().split()
        pid = int(parts[0])
        started = int(parts[1]) if len(parts) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0 or (started is None and not markers):
        return None  # an old-style bare pid proves nothing without a marker to check
    return pid if is_running(pid, markers, started or None) else None


def terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, wait until gone (reaping it if it is our child), then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_running(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: its parent (or init) reaps it
        os.waitpid(pid, os.WNOHANG)
