"""Login accounts bound to client certificates (REQUIRE SUBJECT ... AND ISSUER ...).

Idempotent: each run re-asserts the password and the certificate binding, so a rotated
certificate or a tampered account is put back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pymysql

from provision.pki import cert_subject_issuer

# role -> account name. The admin (root@localhost over the socket) is the break-glass path.
LOGIN_ACCOUNTS = {"app": "app_user", "auditor": "auditor", "migration": "migration"}
# The transport canary (ZTM-TLS-2). MariaDB answers a plaintext login under
# require_secure_transport=ON with the same 1045 as a REQUIRE X509 refusal, so only an
# account that does not itself demand TLS can show that the *server* refuses plaintext.
# It holds no privilege beyond USAGE, which ZTM-TLS-3 verifies.
PROBE_ACCOUNT = "ztm_probe"


@dataclass(frozen=True)
class LoginAccount:
    user: str
    host: str
    password: str
    cert: Path


def apply_login_account(conn: pymysql.connections.Connection, account: LoginAccount) -> None:
    subject, issuer = cert_subject_issuer(account.cert)
    with conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE SUBJECT %s AND ISSUER %s",
                    (account.user, account.host, account.password, subject, issuer))
        cur.execute("ALTER USER %s@%s IDENTIFIED BY %s REQUIRE SUBJECT %s AND ISSUER %s",
                    (account.user, account.host, account.password, subject, issuer))


def apply_probe_account(conn: pymysql.connections.Connection, user: str, host: str, password: str) -> None:
    with conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE NONE", (user, host, password))
        cur.execute("ALTER USER %s@%s IDENTIFIED BY %s REQUIRE NONE", (user, host, password))
        cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host))


def drop_default_accounts(conn: pymysql.connections.Connection,
                          keep_hosts_for_root: tuple[str, ...] = ("localhost",),
                          keep: tuple[str, str] | None = None) -> list[str]:
    """Drop anonymous accounts and root reachable over TCP that a fresh install may create;
    never ``keep`` (the account the caller is connected as: dropping it would lock it out)."""
    dropped = []
    with conn.cursor() as cur:
        cur.execute("SELECT user, host FROM mysql.user WHERE user = '' OR (user = 'root' AND host NOT IN %s)",
                    (keep_hosts_for_root,))
        for user, host in cur.fetchall():
            user, host = (v.decode() if isinstance(v, bytes) else v for v in (user, host))
            if (user, host) == keep:
                continue
            cur.execute("DROP USER %s@%s", (user, host))
            dropped.append(f"{user}@{host}")
    return dropped
