"""The database server of a deployment: its folder, its my.cnf, its process.

Config is rendered from the dialect's hardened settings plus engine extras; ``overrides``
let tests break one setting on purpose (a value, or None to drop the option).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provision import procs
from provision.engines.base import Engine, mysql_ids
from provision.files import write_private
from provision.schema import init_sql
from ztm.errors import UserError

Overrides = dict[str, str | None]


@dataclass(frozen=True)
class ServerLayout:
    """Everything of the server under one folder (the 'database host' files)."""

    root: Path

    etc = property(lambda self: self.root / "etc")
    tls = property(lambda self: self.root / "etc" / "tls")
    defaults_file = property(lambda self: self.root / "etc" / "my.cnf")
    datadir = property(lambda self: self.root / "data")
    run = property(lambda self: self.root / "run")
    socket = property(lambda self: self.root / "run" / "mysqld.sock")
    pid_file = property(lambda self: self.root / "run" / "mysqld.pid")
    log_dir = property(lambda self: self.root / "log")
    error_log = property(lambda self: self.root / "log" / "error.log")
    secure_files = property(lambda self: self.root / "secure-files")
    init_file = property(lambda self: self.root / "etc" / "init.sql")
    # Drop-in folder, read last (as Debian's /etc/mysql/conf.d): what an operator adds there wins.
    conf_d = property(lambda self: self.root / "etc" / "conf.d")

    @property
    def key_files(self) -> list[Path]:
        return [self.tls / "server.key"]


def render_config(engine: Engine, layout: ServerLayout, *, bind_address: str, port: int,
                  overrides: Overrides | None = None) -> str:
    options: dict[str, str | None] = {
        "user": "mysql",
        "datadir": str(layout.datadir),
        "socket": str(layout.socket),
        "pid-file": str(layout.pid_file),
        "log-error": str(layout.error_log),
        "bind-address": bind_address,
        "port": str(port),
        "ssl_ca": str(layout.tls / "ca.pem"),
        "ssl_cert": str(layout.tls / "server.pem"),
        "ssl_key": str(layout.tls / "server.key"),
        **engine.dialect.server_settings(crl=str(layout.tls / "crl.pem"), secure_file_priv=str(layout.secure_files)),
        **engine.extra_options(),
    }
    if layout.init_file.exists():  # clears stale tenant contexts at every start (provision/sql/000_init.sql)
        options["init_file"] = str(layout.init_file)
    options.update(overrides or {})
    lines = ["# Written by ztm provision. Hardened settings: see ztm/dialect.py.", "[mysqld]"]
    lines += [f"{k} = {v}" for k, v in options.items() if v is not None]
    lines += ["", "[client]", f"socket = {layout.socket}", "", f"!includedir {layout.conf_d}", ""]
    return "\n".join(lines)


def prepare_folders(layout: ServerLayout, pki_server_dir: Path, database: str) -> None:
    """Create the folders and install TLS material with the owners and modes ZTM-HST-1 expects;
    the init file the server runs at every start is written for ``database``."""
    uid, gid = mysql_ids()
    for folder, mode in ((layout.root, 0o755), (layout.etc, 0o750), (layout.conf_d, 0o750), (layout.tls, 0o750),
                         (layout.datadir, 0o750), (layout.run, 0o755), (layout.log_dir, 0o750),
                         (layout.secure_files, 0o750)):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)
        # The server reads its configuration and TLS folder but must not be able to rewrite them.
        os.chown(folder, 0 if folder in (layout.root, layout.etc, layout.conf_d, layout.tls) else uid, gid)
    write_private(layout.init_file, init_sql(database), mode=0o640)
    os.chown(layout.init_file, 0, gid)
    for name, mode in (("server.pem", 0o644), ("ca.pem", 0o644), ("crl.pem", 0o644), ("server.key", 0o600)):
        dest = layout.tls / name
        write_private(dest, (pki_server_dir / name).read_bytes(), mode=mode)
        os.chown(dest, uid, gid)


def write_config(layout: ServerLayout, text: str) -> None:
    _, gid = mysql_ids()
    write_private(layout.defaults_file, text, mode=0o640)
    os.chown(layout.defaults_file, 0, gid)


def initialize(engine: Engine, layout: ServerLayout, netns_argv: list[str]) -> None:
    if (layout.datadir / "mysql").is_dir():
        return
    for child in layout.datadir.iterdir():  # a half-made datadir from an interrupted run
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    argv = [*netns_argv, *engine.run_prefix(), *engine.initialize_argv(layout.defaults_file)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"initialising the {engine.name} data directory failed: {_last_line(done, layout)}")


def _last_line(done: subprocess.CompletedProcess[str], layout: ServerLayout) -> str:
    text = (done.stderr or done.stdout or "").strip()
    if not text and layout.error_log.exists():
        text = layout.error_log.read_text(errors="replace").strip()
    errors = [line for line in text.splitlines() if "ERROR" in line] or text.splitlines() or ["no output"]
    return errors[-1][-300:]


def read_pid(layout: ServerLayout) -> int | None:
    """The server's pid, if the process in its pid file is this layout's server (a stale
    file whose pid now belongs to another process does not count)."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and procs.is_running(pid, (f"--defaults-file={layout.defaults_file}",)) else None


def start(engine: Engine, layout: ServerLayout, netns_argv: list[str], timeout: float = 60.0) -> int:
    """Start the server in the background and wait until its socket answers."""
    pid = read_pid(layout)
    if pid is not None:
        return pid
    layout.socket.unlink(missing_ok=True)
    argv = [*netns_argv, *engine.run_prefix(), *engine.server_argv(layout.defaults_file)]
    with open(layout.log_dir / "server.stdout", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the {engine.name} server exited at start: {_error_tail(layout)}")
        if _socket_answers(layout.socket) and (pid := read_pid(layout)) is not None:
            return pid
        time.sleep(0.1)
    raise UserError(f"the {engine.name} server did not come up within {timeout:.0f} s: {_error_tail(layout)}")


def _error_tail(layout: ServerLayout) -> str:
    if not layout.error_log.exists():
        return "no error log"
    lines = layout.error_log.read_text(errors="replace").splitlines()
    errors = [line for line in lines[-50:] if "ERROR" in line] or lines[-1:] or ["empty error log"]
    return errors[-1][-300:]


def _socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
            return bool(s.recv(1))
        except OSError:
            return False


def stop(layout: ServerLayout, timeout: float = 60.0) -> bool:
    """Stop the server gracefully; True if one was running."""
    pid = read_pid(layout)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it if this process started it (a zombie is not alive)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
