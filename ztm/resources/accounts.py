"""Accounts and their certificate bindings, read through the admin path."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import pymysql

from ztm.dialect import Dialect


@dataclass(frozen=True)
class Account:
    user: str
    host: str
    ssl_type: str
    x509_subject: str
    x509_issuer: str
    locked: bool

    @property
    def name(self) -> str:
        return f"'{self.user}'@'{self.host}'"

    @property
    def socket_only(self) -> bool:
        """Only as the host *name* 'localhost'; whether the server really keeps it off TCP is
        ``tcp_reachable`` (it depends on skip_name_resolve, skip_networking and bind_address)."""
        return self.host == "localhost"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _text(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    return "" if value is None else str(value)


def list_accounts(conn: pymysql.connections.Connection, dialect: Dialect) -> list[Account]:
    with conn.cursor() as cur:
        cur.execute(dialect.accounts_query)
        rows = cur.fetchall()
    return [Account(user=_text(u), host=_text(h), ssl_type=_text(t).upper(), x509_subject=_text(s),
                    x509_issuer=_text(i), locked=_text(locked).upper() == "Y") for u, h, t, s, i, locked in rows]


def find_account(accounts: list[Account], user: str, host: str) -> Account | None:
    """The account user@host, or None if the server has none."""
    return next((a for a in accounts if (a.user, a.host) == (user, host)), None)


_PASSWORD_HASH = re.compile(r"(IDENTIFIED (?:BY PASSWORD|VIA \w+ USING|WITH \w+ AS)) '[^']*'", re.IGNORECASE)


def grants_for(conn: pymysql.connections.Connection, user: str, host: str) -> list[str]:
    """SHOW GRANTS with password hashes redacted (they are secrets too)."""
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
        return [_PASSWORD_HASH.sub(r"\1 '<redacted>'", row[0]) for row in cur.fetchall()]


LOOPBACK_BINDS = {"", "*", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class Reach:
    """The server settings that decide which accounts a TCP login can match."""

    skip_name_resolve: bool
    skip_networking: bool
    bind_address: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def reach_of(conn: pymysql.connections.Connection) -> Reach:
    """The server's skip_name_resolve, skip_networking and bind_address, read live."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                    "('skip_name_resolve', 'skip_networking', 'bind_address')")
        values = {_text(k): _text(v) for k, v in cur.fetchall()}
    return Reach(skip_name_resolve=values.get("skip_name_resolve", "OFF").upper() == "ON",
                 skip_networking=values.get("skip_networking", "OFF").upper() == "ON",
                 bind_address=values.get("bind_address", ""))


def tcp_reachable(account: Account, reach: Reach) -> bool:
    """Whether a TCP login can match ``account``. A 'localhost' account is reachable over TCP
    (from 127.0.0.1, resolved to 'localhost') unless the server proves otherwise:
    skip_name_resolve=ON, skip_networking=ON, or no loopback address among bind_address's."""
    if reach.skip_networking:
        return False
    if account.host != "localhost":
        return True
    binds = {b.strip() for b in reach.bind_address.split(",")}
    return not reach.skip_name_resolve and bool(binds & LOOPBACK_BINDS)
