"""What the target offers, learnt once before the controls run (issue 14).

``preflight(target)`` answers: is the server reachable over TCP, does it offer TLS, which
target roles can log in, is the data plane present, can the database host be reached. The
answers are facts, recorded in the bundle (run.json, under the target); fixtures turn a
missing prerequisite into one sentence per affected control instead of a cascade of driver
errors.

    >>> facts = preflight(load_target("lab/target.toml"))
    >>> facts.tls_offered, facts.logins["app"]
    (True, 'ok')
"""

from __future__ import annotations

import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from ztm.data_plane import API_PROCEDURES, AUDIT_TABLES, DATA_TABLES
from ztm.errors import UserError
from ztm.target import MissingInput, Target

TIMEOUT = 5.0
CLIENT_SSL = 0x0800  # capability flag of the server greeting (MySQL protocol HandshakeV10)
MAX_GREETING = 1 << 12


@dataclass
class Facts:
    tcp: str = "not tried"  # "ok" or why not
    server_version: str | None = None
    tls_offered: bool | None = None  # None: not known (no greeting)
    logins: dict[str, str] = field(default_factory=dict)  # role -> "ok" or why not
    data_plane_missing: list[str] | None = None  # None: could not be looked at
    data_plane_note: str = ""
    host: str = "not tried"

    @property
    def reachable(self) -> bool:
        return self.tcp == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def greeting(host: str, port: int, timeout: float = TIMEOUT) -> tuple[str, bool]:
    """(server version, TLS offered) from the server's first packet; OSError/ValueError if none."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        header = _read(sock, 4)
        length = int.from_bytes(header[:3], "little")
        if not 0 < length <= MAX_GREETING:
            raise ValueError(f"a greeting of {length} bytes is not a MySQL greeting")
        body = _read(sock, length)
    if body[0] == 0xFF:  # an error packet instead of a greeting (e.g. host blocked)
        raise ValueError(f"the server refused the connection: {body[9:].decode(errors='replace')[:200]}")
    if body[0] != 10:
        raise ValueError(f"protocol {body[0]} is not the MySQL protocol 10")
    end = body.index(b"\0", 1)
    version = body[1:end].decode(errors="replace")
    offset = end + 1 + 4 + 8 + 1  # thread id, auth data part 1, filler
    (capabilities,) = struct.unpack_from("<H", body, offset)
    return version, bool(capabilities & CLIENT_SSL)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ValueError("the server closed the connection before its greeting")
        data += chunk
    return data


def preflight(target: Target, *, host_check: bool = True) -> Facts:
    """Every fact, each probe bounded by TIMEOUT; never raises for what the target lacks."""
    import pymysql

    from ztm.db import connect, query, try_login  # pymysql is imported only when a run asks

    facts = Facts()
    try:
        facts.server_version, facts.tls_offered = greeting(target.host, target.port)
        facts.tcp = "ok"
    except (OSError, ValueError, IndexError, struct.error) as exc:
        facts.tcp = f"no MySQL server answered at {target.host}:{target.port}: {exc}"
    for role, identity in target.roles.items():
        if identity.socket is None and not facts.reachable:
            facts.logins[role] = "not tried: the server is not reachable over TCP"
            continue
        try:
            outcome = try_login(target, identity)
        except (UserError, MissingInput) as exc:
            facts.logins[role] = f"not tried: {exc}"
            continue
        facts.logins[role] = "ok" if outcome.accepted else f"refused (error {outcome.errno}: {outcome.message})"
    if facts.logins.get("admin") == "ok":
        try:
            conn = connect(target, target.role("admin"))
            try:
                names = {n for (n,) in query(conn, "SELECT table_name FROM information_schema.tables "
                                                   "WHERE table_schema = %s", (target.database,))}
                names |= {n for (n,) in query(conn, "SELECT routine_name FROM information_schema.routines "
                                                    "WHERE routine_schema = %s", (target.database,))}
            finally:
                conn.close()
            expected = [*DATA_TABLES, *AUDIT_TABLES, *API_PROCEDURES]
            facts.data_plane_missing = [n for n in expected if n not in names]
        except (pymysql.MySQLError, UserError, OSError) as exc:
            facts.data_plane_note = f"could not look: {exc}"
    else:
        facts.data_plane_note = "not looked at: the admin path cannot log in"
    spec = target.section("host").get("spec")
    if not spec:
        facts.host = "not named: the target has no [host] section"
    elif host_check:
        from ztm.checks.host_spec import HostUnreachable, open_host

        try:
            open_host(spec)
            facts.host = "ok"
        except HostUnreachable as exc:
            facts.host = str(exc)
    return facts


def data_plane_problem(facts: Facts, database: str) -> tuple[str, str] | None:
    """("skip"|"fail", sentence) when the data plane cannot be assessed or is incomplete."""
    missing = facts.data_plane_missing
    if missing is None:
        return "skip", f"not assessed: the data plane in {database} was not examined ({facts.data_plane_note})"
    expected = len(DATA_TABLES) + len(AUDIT_TABLES) + len(API_PROCEDURES)
    if len(missing) == expected:
        return "skip", (f"not assessed: database {database} holds no data plane (none of its tables and "
                        "procedures exist), so there is nothing to probe")
    if missing:
        return "fail", f"the data plane in {database} is incomplete: missing {', '.join(missing)}"
    return None
