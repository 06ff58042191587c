"""Client connections to the target: pymysql over mutual TLS with a verified server name."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from ztm.errors import UserError
from ztm.target import Identity, Target

CONNECT_TIMEOUT = 5


class _NamePinnedContext(ssl.SSLContext):
    """pymysql passes the host (an address) as server_hostname; verify the target's name instead."""

    server_name: str = ""

    def wrap_socket(self, sock, *args: Any, server_hostname: str | None = None, **kwargs: Any):  # type: ignore[override]
        return super().wrap_socket(sock, *args, server_hostname=self.server_name, **kwargs)


def client_context(target: Target, cert: Path | None, key: Path | None, *,
                   minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    ctx = _NamePinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = target.server_name
    ctx.minimum_version = minimum
    try:
        ctx.load_verify_locations(cafile=str(target.ca))
        if cert is not None and key is not None:
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except FileNotFoundError as exc:
        raise UserError(f"certificate file missing: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise UserError(f"unusable certificate or key ({cert}, {key}): {exc.reason or exc}") from None
    return ctx


def connect(target: Target, identity: Identity, *, tls: bool = True, present_cert: bool = True,
            cert: Path | None = None, key: Path | None = None, password: str | None = None,
            database: str | None = None, **kwargs: Any) -> pymysql.connections.Connection:
    """Connect as ``identity``; ``cert``/``key``/``password`` override the identity's own
    (negative probes), ``present_cert=False`` offers no client certificate, ``tls=False``
    sends the login in plaintext (transport probes only).
    Raises pymysql errors: callers decide whether a refusal is expected."""
    secret = password if password is not None else (identity.password.reveal() if identity.password else "")
    common: dict[str, Any] = dict(user=identity.user, password=secret, database=database,
                                  connect_timeout=CONNECT_TIMEOUT, autocommit=True, charset="utf8mb4", **kwargs)
    if identity.socket is not None:
        return pymysql.connect(unix_socket=str(identity.socket), **common)
    ssl_ctx = None
    if tls:
        ssl_ctx = (client_context(target, cert or identity.cert, key or identity.key) if present_cert
                   else client_context(target, None, None))
    if ssl_ctx is None:  # pymysql >= 1.2 otherwise "prefers" TLS on its own
        return pymysql.connect(host=target.host, port=target.port, ssl_disabled=True, **common)
    return pymysql.connect(host=target.host, port=target.port, ssl=ssl_ctx, **common)


@dataclass(frozen=True)
class LoginOutcome:
    """The result of a login probe: accepted, or refused with the server's error."""

    accepted: bool
    errno: int | None = None
    message: str = ""
    tls_version: str | None = None
    cipher: str | None = None
    current_user: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def try_login(target: Target, identity: Identity, **kwargs: Any) -> LoginOutcome:
    """Attempt a login and report what happened, without raising for a refusal."""
    try:
        conn = connect(target, identity, **kwargs)
    except pymysql.err.OperationalError as exc:
        errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return LoginOutcome(False, errno, str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            (user,) = cur.fetchone()
        sock = conn._sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        cipher = sock.cipher()[0] if isinstance(sock, ssl.SSLSocket) else None
        return LoginOutcome(True, current_user=user, tls_version=version, cipher=cipher)
    finally:
        conn.close()


def query(conn: pymysql.connections.Connection, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def quote_name(name: str) -> str:
    """A schema or table name as a quoted SQL identifier; only names the target schema allows
    (letters, digits, underscore) are accepted, so the quoting can never be escaped."""
    if not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name):
        raise UserError(f"{name!r} is not a database name this suite accepts (letters, digits, underscore)", 2)
    return f"`{name}`"


COM_RESET_CONNECTION = 0x1F  # MySQL protocol command; pymysql has no public method for it


def reset_connection(conn: pymysql.connections.Connection) -> None:
    """Send COM_RESET_CONNECTION, as connection pools do between requests: the session's user
    variables, temporary tables and session settings are reset, the connection stays."""
    conn._execute_command(COM_RESET_CONNECTION, b"")
    conn._read_ok_packet()
