"""What the lab and the installer need from a database engine."""

from __future__ import annotations

import os
import pwd
from abc import ABC, abstractmethod
from pathlib import Path

from ztm.dialect import Dialect
from ztm.errors import UserError


def default_cache_dir() -> Path:
    """Where engine binaries that take long to fetch are kept between labs ($ZTM_CACHE_DIR)."""
    return Path(os.environ.get("ZTM_CACHE_DIR", "/var/cache/ztm"))


class Engine(ABC):
    """One server implementation. Paths in argv are host paths: an engine that runs in a
    chroot bind-mounts the server folder at the same path inside it (``attach``)."""

    dialect: Dialect

    @property
    def name(self) -> str:
        return self.dialect.name

    @abstractmethod
    def install(self, cache_dir: Path) -> None:
        """Make the server binaries available (idempotent)."""

    @abstractmethod
    def version(self) -> str:
        """The server's version string (from the binary, not a running server)."""

    def run_prefix(self) -> list[str]:
        """argv prefix to run a server-side program (e.g. chroot ROOTFS)."""
        return []

    def attach(self, server_dir: Path) -> None:
        """Make ``server_dir`` visible to the server at the same path."""

    def detach(self, server_dir: Path) -> None:
        """Undo ``attach``."""

    @abstractmethod
    def initialize_argv(self, defaults_file: Path) -> list[str]:
        """Create an empty data directory whose root@localhost has an empty password
        (the lab sets one at once over the socket)."""

    @abstractmethod
    def server_argv(self, defaults_file: Path) -> list[str]:
        """Start the server in the foreground with ``defaults_file``."""

    def extra_options(self) -> dict[str, str]:
        """Engine-specific [mysqld] options (logging for fail2ban, extra listeners off)."""
        return {}


def mysql_ids() -> tuple[int, int]:
    """uid and gid of the 'mysql' system account the servers of both engines run as."""
    try:
        entry = pwd.getpwnam("mysql")
    except KeyError:
        raise UserError("the 'mysql' system account does not exist (install mariadb-server first)") from None
    return entry.pw_uid, entry.pw_gid
