"""fail2ban for the database host: a jail for MySQL/MariaDB authentication failures (and
sshd), banning through nftables. In the lab it runs inside the database namespace, with
its own configuration, socket and database under the lab folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provision.files import write_public
from ztm.errors import UserError

SYSTEM_CONF = Path("/etc/fail2ban")
JAIL = "mysqld-auth"


@dataclass(frozen=True)
class Fail2banLayout:
    root: Path

    conf = property(lambda self: self.root / "conf")
    socket = property(lambda self: self.root / "run" / "fail2ban.sock")
    pid_file = property(lambda self: self.root / "run" / "fail2ban.pid")
    log = property(lambda self: self.root / "fail2ban.log")


@dataclass(frozen=True)
class JailSettings:
    maxretry: int = 5
    findtime: int = 60
    bantime: int = 600
    ignoreip: tuple[str, ...] = ("127.0.0.1/8",)


def render_jail(server_log: Path, settings: JailSettings, ssh_log: Path) -> str:
    """Both jails, every setting inside its own section (a jail.d drop-in on a VM must not
    change the host's other jails through [DEFAULT])."""
    common = (f"backend = polling\nignoreip = {' '.join(settings.ignoreip)}\nmaxretry = {settings.maxretry}\n"
              f"findtime = {settings.findtime}\nbantime = {settings.bantime}\n")
    return f"""# Written by ztm provision.
[{JAIL}]
enabled = true
filter = mysqld-auth
logpath = {server_log}
{common}# Every port of the host, rejected, through the host's nftables (table inet f2b-table).
action = nftables-allports[name={JAIL}, protocol="tcp", blocktype="reject"]

[sshd]
enabled = true
filter = sshd
logpath = {ssh_log}
{common}action = nftables-allports[name=sshd, protocol="tcp", blocktype="reject"]
"""


VM_DROP_IN = SYSTEM_CONF / "jail.d" / "ztm.conf"


def install_on_host(server_log: Path, settings: JailSettings, ssh_log: Path, out: Path = VM_DROP_IN) -> None:
    """``ztm provision fail2ban`` on a VM: a jail.d drop-in for the system's fail2ban, checked
    with ``fail2ban-client -t`` before the service reloads it (a broken jail never goes live)."""
    for log in (server_log, ssh_log):
        if not log.exists():
            raise UserError(f"{log} does not exist: fail2ban would have nothing to read (is it the server's "
                            "log_error / the SSH log?)")
    if shutil.which("fail2ban-client") is None:
        raise UserError("fail2ban-client not found: install fail2ban on this host first (apt-get install fail2ban)")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent} does not exist: is fail2ban installed on this host?")
    previous = out.read_bytes() if out.exists() else None
    write_public(out, render_jail(server_log, settings, ssh_log))
    test = subprocess.run(["fail2ban-client", "-t"], capture_output=True, text=True)
    if test.returncode != 0:
        if previous is None:
            out.unlink()
        else:
            write_public(out, previous)
        raise UserError(f"fail2ban rejects the jail: {(test.stderr or test.stdout).strip()[-300:]}")
    done = subprocess.run(["fail2ban-client", "reload"], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"fail2ban-client reload failed: {(done.stderr or done.stdout).strip()[-300:]}")


def write_config(layout: Fail2banLayout, server_log: Path, settings: JailSettings) -> None:
    layout.conf.mkdir(parents=True, exist_ok=True)
    (layout.root / "run").mkdir(exist_ok=True)
    for sub in ("filter.d", "action.d"):
        link = layout.conf / sub
        if not link.exists():
            link.symlink_to(SYSTEM_CONF / sub)
    (layout.conf / "fail2ban.conf").write_text(
        f"[Definition]\nloglevel = INFO\nlogtarget = {layout.log}\nsocket = {layout.socket}\n"
        f"pidfile = {layout.pid_file}\ndbfile = {layout.root / 'fail2ban.sqlite3'}\n")
    ssh_log = layout.root / "auth.log"  # the lab has no sshd; on a VM this is /var/log/auth.log
    ssh_log.touch()
    (layout.conf / "jail.conf").write_text(render_jail(server_log, settings, ssh_log))


def running_pid(layout: Fail2banLayout) -> int | None:
    try:
        pid = int(layout.pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(layout: Fail2banLayout, netns_argv: list[str], timeout: float = 30.0) -> None:
    if running_pid(layout) is not None:
        client(layout, "reload")  # picks up a changed jail
        return
    layout.socket.unlink(missing_ok=True)
    # The client reads the configuration, starts the server (in the namespace it runs in)
    # and hands it the jails.
    subprocess.run([*netns_argv, "fail2ban-client", "-x", "-c", str(layout.conf), "-s", str(layout.socket),
                    "-p", str(layout.pid_file), "start"], capture_output=True, text=True, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client(layout, "status", JAIL, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise UserError(f"fail2ban did not start within {timeout:.0f} s (see {layout.log})")


def stop(layout: Fail2banLayout) -> None:
    pid = running_pid(layout)
    if pid is None:
        return
    if client(layout, "stop", check=False).returncode != 0:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and running_pid(layout) is not None:
        time.sleep(0.1)


def client(layout: Fail2banLayout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["fail2ban-client", "-c", str(layout.conf), "-s", str(layout.socket), *args],
                          capture_output=True, text=True)
    if check and done.returncode != 0:
        raise UserError(f"fail2ban-client {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-200:]}")
    return done
