"""Client connections to the target: pymysql over mutual TLS with a verified server name."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from ztm.errors import UserError
from ztm.target import Identity, SecretRef, Target

CONNECT_TIMEOUT = 5
LOGIN_TIMEOUT = 30  # seconds per read while greeting and logging in


class _NamePinnedContext(ssl.SSLContext):
    """pymysql passes the host (an address) as server_hostname; verify the target's name instead."""

    server_name: str = ""

    def wrap_socket(self, sock, *args: Any, server_hostname: str | None = None, **kwargs: Any):  # type: ignore[override]
        return super().wrap_socket(sock, *args, server_hostname=self.server_name, **kwargs)


class _PassphraseNeeded(Exception):
    """Raised from OpenSSL's passphrase callback: the key is encrypted and none was given."""


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    if ca.is_dir():
        raise UserError(f"tls.ca {ca} is a directory, not a CA certificate file")
    if not ca.exists():
        raise UserError(f"tls.ca {ca} does not exist")
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except OSError as exc:  # ssl.SSLError is an OSError too
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise UserError(f"tls.ca {ca} holds no usable CA certificate: {reason}") from None


def _load_pair(ctx: ssl.SSLContext, cert: Path, key: Path, passphrase: SecretRef | None) -> None:
    for kind, path in (("client certificate", cert), ("client key", key)):
        if path.is_dir() or not path.exists():
            raise UserError(f"{kind} {path} {'is a directory' if path.is_dir() else 'does not exist'}")

    def ask() -> bytes:  # never OpenSSL's own prompt on the terminal
        if passphrase is None:
            raise _PassphraseNeeded
        return passphrase.reveal().encode()

    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key), password=ask)
    except _PassphraseNeeded:
        raise UserError(f"client key {key} is encrypted and the target gives no passphrase for it "
                        "(key_passphrase = {file = ...} or {env = ...})") from None
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise UserError(f"unusable client certificate or key ({cert}, {key}): {reason}") from None


def client_context(target: Target, cert: Path | None, key: Path | None, *,
                   minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                   passphrase: SecretRef | None = None) -> ssl.SSLContext:
    """The CA, and the client pair when given, each checked on its own so an error names the
    file at fault; an encrypted key opens only with ``passphrase`` (never a terminal prompt)."""
    ctx = _NamePinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = target.verify_name
    ctx.minimum_version = minimum
    _load_ca(ctx, target.need_ca())
    if cert is not None and key is not None:
        _load_pair(ctx, cert, key, passphrase)
    return ctx


def connect(target: Target, identity: Identity, *, tls: bool = True, present_cert: bool = True,
            cert: Path | None = None, key: Path | None = None, password: str | None = None,
            database: str | None = None, **kwargs: Any) -> pymysql.connections.Connection:
    """Connect as ``identity``; ``cert``/``key``/``password`` override the identity's own
    (negative probes), ``present_cert=False`` offers no client certificate, ``tls=False``
    sends the login in plaintext (transport probes only).
    Raises pymysql errors: callers decide whether a refusal is expected."""
    secret = password if password is not None else (identity.password.reveal() if identity.password else "")
    read_timeout = kwargs.pop("read_timeout", None)
    common: dict[str, Any] = dict(user=identity.user, password=secret, database=database,
                                  connect_timeout=CONNECT_TIMEOUT, read_timeout=LOGIN_TIMEOUT, autocommit=True,
                                  charset="utf8mb4", **kwargs)
    if identity.socket is not None:
        # A local socket needs no TLS; pymysql would otherwise build a default context (~0.1 s a login).
        return _after_login(pymysql.connect(unix_socket=str(identity.socket), ssl_disabled=True, **common),
                            read_timeout)
    ssl_ctx = None
    if tls:
        own_key = key is None or key == identity.key
        ssl_ctx = (client_context(target, cert or identity.cert, key or identity.key,
                                  passphrase=identity.key_passphrase if own_key else None) if present_cert
                   else client_context(target, None, None))
    if ssl_ctx is None:  # pymysql >= 1.2 otherwise "prefers" TLS on its own
        return _after_login(pymysql.connect(host=target.host, port=target.port, ssl_disabled=True, **common),
                            read_timeout)
    return _after_login(pymysql.connect(host=target.host, port=target.port, ssl=ssl_ctx, **common), read_timeout)


def _after_login(conn: pymysql.connections.Connection, read_timeout: float | None) -> pymysql.connections.Connection:
    """pymysql's connect_timeout covers only the TCP connect: the greeting and login are read
    under LOGIN_TIMEOUT (a server that accepts and stays silent is an error, not a hang), and
    queries then get the caller's read timeout (none by default: a lock wait may be long).
    pymysql applies a changed _read_timeout before its next read."""
    conn._read_timeout = read_timeout
    return conn


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


def connect_c(target: Target, identity: Identity, *, database: str | None = None,
              verify_address: bool = False) -> Any | None:
    """The same login through the C driver (mysqlclient, ``MySQLdb``) for bulk reads, or None
    when it cannot be made with the checks :func:`connect` makes: mysqlclient absent; a TCP
    target whose address is not its server name (libmariadb checks the certificate against
    the host it connects to and cannot be told another name, so the name pinning of
    :func:`connect` cannot be reproduced: callers keep pymysql); or an encrypted client key
    (mysqlclient cannot take a passphrase without a prompt). Rows come back as bytes.
    ``verify_address`` accepts a certificate that names the address instead (CA chain still
    verified): for benchmarks and driver comparisons, never for a control's verdict."""
    try:
        import MySQLdb
    except ImportError:
        return None
    secret = identity.password.reveal() if identity.password else ""
    common: dict[str, Any] = dict(user=identity.user, password=secret, connect_timeout=CONNECT_TIMEOUT,
                                  charset="utf8mb4", use_unicode=False, autocommit=True)
    if database:
        common["database"] = database
    if identity.socket is not None:
        return MySQLdb.connect(unix_socket=str(identity.socket), **common)
    if (target.host != target.server_name and not verify_address) or identity.key_passphrase is not None:
        return None
    if target.ca.is_dir() or not target.ca.exists():
        client_context(target, None, None)  # raises the same one-line error as connect()
    tls = {"ca": str(target.ca)}
    if identity.cert is not None and identity.key is not None:
        tls |= {"cert": str(identity.cert), "key": str(identity.key)}
    return MySQLdb.connect(host=target.host, port=target.port, ssl=tls, ssl_mode="VERIFY_IDENTITY",
                           **common)
