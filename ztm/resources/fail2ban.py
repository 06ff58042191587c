"""fail2ban on the database host (``fail2ban-client`` through testinfra), and the server's own
log of failed logins that it reads.

    >>> jail = Fail2banJail(host, "/var/run/fail2ban/fail2ban.sock", "mysqld-auth")
    >>> jail.answers, jail.logpaths, jail.banned
    (True, ['/var/log/mysql/error.log'], [])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_SOCKET = "/var/run/fail2ban/fail2ban.sock"


class Fail2banJail:
    def __init__(self, host: Any, socket: str, name: str) -> None:
        self.host, self.socket, self.name = host, socket, name

    def client(self, *args: str) -> Any:
        return self.host.run("fail2ban-client -s %s" + " %s" * len(args), self.socket, *args)

    def get(self, key: str) -> str:
        return self.client("get", self.name, key).stdout.strip()

    def setting(self, key: str, default: int) -> int:
        value = self.get(key)
        return int(value) if value.lstrip("-").isdigit() else default

    @property
    def status_error(self) -> str | None:
        """Why fail2ban does not answer for this jail (None: it does)."""
        status = self.client("status", self.name)
        return None if status.rc == 0 else (status.stderr or status.stdout).strip()[-200:]

    @property
    def logpaths(self) -> list[str]:
        # "Current monitored log file(s):\n|- /a\n`- /b"
        return [line[3:].strip() for line in self.get("logpath").splitlines() if line[:3] in ("|- ", "`- ")]

    @property
    def banned(self) -> list[str]:
        for line in self.client("status", self.name).stdout.splitlines():
            if "Banned IP list:" in line:
                return line.split("Banned IP list:", 1)[1].split()
        return []

    def unban(self, address: str) -> None:
        self.client("set", self.name, "unbanip", address)


def realpath(host: Any, path: str) -> str:
    """The file a path names after every link (the path itself if it cannot be resolved)."""
    try:
        return host.file(path).linked_to or path
    except AssertionError:
        return path


def size(host: Any, path: str) -> int:
    try:
        return host.file(path).size
    except AssertionError:  # missing or unreadable: nothing written yet, as far as we can tell
        return 0


def failed_logins_since(host: Any, path: str, offset: int, source: str) -> int:
    """Failed-login lines for ``source`` written to ``path`` after byte ``offset``."""
    tail = host.run("tail -c +%s %s", str(offset + 1), path).stdout
    return sum(1 for line in tail.splitlines() if "Access denied" in line and f"@'{source}'" in line)


@dataclass(frozen=True)
class ServerLog:
    path: str | None  # on the database host; None when the server logs to stderr/journal
    variable: str
    value: str
    needed: str

    @property
    def logs_failed_logins(self) -> bool:
        return self.value.isdigit() and int(self.value) >= int(self.needed)


def server_log(admin: Any, host: Any, dialect: Any) -> ServerLog:
    """Where the server writes its log, and whether its verbosity includes failed logins."""
    variable, needed, _ = dialect.failed_login_log
    with admin.cursor() as cur:
        cur.execute(f"SELECT @@log_error, @@datadir, @@{variable}")  # the name comes from the dialect
        log_error, datadir, value = cur.fetchone()
    path = None
    if log_error and log_error not in ("stderr", "./stderr"):
        if not log_error.startswith("/"):
            log_error = datadir.rstrip("/") + "/" + log_error.removeprefix("./")
        path = realpath(host, log_error)
    return ServerLog(path, variable, str(value), needed)
