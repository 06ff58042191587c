"""Real MySQL from Debian's ``mysql-server-core`` (unstable), in a debootstrap'd rootfs.

Debian 12 ships only MariaDB, so the MySQL server lives in a minimal Debian unstable
rootfs kept in the cache folder and runs with ``chroot`` inside the database namespace.
The server folder is bind-mounted at the same path inside the rootfs, so every path in
my.cnf means the same file on the host and for the server (host controls read them).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from provision.engines.base import Engine, default_cache_dir, mysql_ids
from provision.os_packages import ensure_packages
from ztm.dialect import MYSQL
from ztm.errors import UserError

SUITE = "sid"
MIRROR = "http://deb.debian.org/debian"
PACKAGE = "mysql-server-core"
ROOTFS_NAME = "mysql-rootfs"
# $1 rootfs, $2 server folder (same path inside), then the program and its arguments.
_ENTER_ROOTFS = ('r=$1; d=$2; shift 2; mount -t proc proc "$r/proc" && mount --bind "$d" "$r$d" '
                 '&& exec chroot "$r" "$@"')


class MySQLEngine(Engine):
    dialect = MYSQL

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.server_dir: Path | None = None

    @property
    def rootfs(self) -> Path:
        return self.cache_dir / ROOTFS_NAME

    def install(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / ".mysql-rootfs.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two labs installing at once build it once
            if not (self.rootfs / "usr/sbin/mysqld").exists():
                self._bootstrap()
            self._align_mysql_account()

    def _bootstrap(self) -> None:
        ensure_packages(["debootstrap"])
        staging = self.rootfs.with_name(ROOTFS_NAME + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        argv = ["debootstrap", "--variant=minbase", f"--include={PACKAGE}", SUITE, str(staging), MIRROR]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 or not (staging / "usr/sbin/mysqld").exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"building the MySQL rootfs from Debian {SUITE} failed: {tail[0]}")
        shutil.rmtree(self.rootfs, ignore_errors=True)
        staging.rename(self.rootfs)

    def _align_mysql_account(self) -> None:
        """The server drops to 'mysql': inside the rootfs it must have the host's uid/gid,
        since the data and TLS files are owned by the host's mysql account."""
        uid, gid = mysql_ids()
        _set_entry(self.rootfs / "etc/passwd", "mysql", f"mysql:x:{uid}:{gid}:MySQL Server:/nonexistent:/bin/false")
        _set_entry(self.rootfs / "etc/group", "mysql", f"mysql:x:{gid}:")

    def version(self) -> str:
        done = subprocess.run([*self.run_prefix(), "mysqld", "--version"], capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"cannot run mysqld in {self.rootfs}: {done.stderr.strip()[-200:]}")
        # "/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))"
        return done.stdout.split("Ver", 1)[1].split()[0]

    def run_prefix(self) -> list[str]:
        if self.server_dir is None:
            return ["chroot", str(self.rootfs)]
        # A private mount namespace per server process: /proc and the server folder are
        # mounted for it alone, so nothing stays mounted on the host when it exits.
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _ENTER_ROOTFS, "ztm-mysql",
                str(self.rootfs), str(self.server_dir)]

    def attach(self, server_dir: Path) -> None:
        self.server_dir = server_dir
        (self.rootfs / server_dir.relative_to("/")).mkdir(parents=True, exist_ok=True)

    def detach(self, server_dir: Path) -> None:
        """Remove the mount point ``attach`` made in the rootfs (and the lab's folder above it,
        if empty); shared folders higher up stay, another lab may be using them."""
        self.server_dir = None
        point = self.rootfs / server_dir.relative_to("/")
        for folder in (point, point.parent):
            if len(folder.relative_to(self.rootfs).parts) < 2:  # the rootfs's own /tmp, /work...: never ours
                break
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): leave it

    def initialize_argv(self, defaults_file: Path) -> list[str]:
        return ["mysqld", f"--defaults-file={defaults_file}", "--initialize-insecure"]

    def server_argv(self, defaults_file: Path) -> list[str]:
        return ["mysqld", f"--defaults-file={defaults_file}"]

    def extra_options(self) -> dict[str, str]:
        return {
            "mysqlx": "OFF",  # one listener only: the classic protocol on the lab address
            # Verbosity 3 logs "Access denied" notes, which fail2ban's mysqld-auth filter reads.
            "log_error_verbosity": "3",
        }


def _set_entry(path: Path, name: str, line: str) -> None:
    lines = [entry for entry in path.read_text().splitlines() if not entry.startswith(name + ":")]
    path.write_text("\n".join([*lines, line]) + "\n")
