"""MariaDB from the Debian packages on this host."""

from __future__ import annotations

import subprocess
from pathlib import Path

from provision.engines.base import Engine
from provision.os_packages import ensure_packages
from ztm.dialect import MARIADB


class MariaDBEngine(Engine):
    dialect = MARIADB

    def install(self, cache_dir: Path) -> None:
        ensure_packages(["mariadb-server", "mariadb-client"])

    def version(self) -> str:
        out = subprocess.run(["mariadbd", "--version"], capture_output=True, text=True, check=True).stdout
        # "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
        return out.split("Ver", 1)[1].split()[0]

    def initialize_argv(self, defaults_file: Path) -> list[str]:
        return ["mariadb-install-db", f"--defaults-file={defaults_file}", "--auth-root-authentication-method=normal",
                "--skip-test-db"]

    def server_argv(self, defaults_file: Path) -> list[str]:
        return ["mariadbd", f"--defaults-file={defaults_file}"]

    def extra_options(self) -> dict[str, str]:
        # log_warnings=2 logs "Access denied" lines, which fail2ban's mysqld-auth filter reads.
        return {"log_warnings": "2"}
