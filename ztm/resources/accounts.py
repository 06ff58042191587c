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
        # With skip_name_resolve, 'localhost' matches only unix-socket logins.
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
