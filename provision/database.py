"""`ztm provision database`: install the data plane on a server that is not the lab.

Connects through the target's admin path and, idempotently (every run re-asserts all of it):

1. drops anonymous accounts and root accounts reachable over TCP, but never the account it
   is connected as;
2. creates the login accounts of the target's roles (app, auditor, migration) bound to their
   client certificates (``REQUIRE SUBJECT ... AND ISSUER ...`` read from the certificate
   files) with the passwords the target references, and the USAGE-only transport canary
   for the probe role;
3. applies ``provision/sql`` (schema, routines, views, triggers, grants) for the account host;
4. seeds the assessment tenants of the target's ``[tenants]`` and their grants.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from provision import schema
from provision.accounts import (
    LOGIN_ACCOUNTS,
    LoginAccount,
    apply_login_account,
    apply_probe_account,
    drop_default_accounts,
)
from provision.anchor_cli import declare_schema_change
from ztm.data_plane import DATABASE
from ztm.db import connect, quote_name
from ztm.errors import UserError
from ztm.files import write_private
from ztm.target import Target, load_target

# A host pattern for CREATE USER: an address, a name, a netmask or a '%' wildcard; no quotes.
ACCOUNT_HOST = re.compile(r"^[A-Za-z0-9._%:/-]{1,255}$")


@dataclass
class ProvisionReport:
    dropped: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    statements: int = 0
    tenants: int = 0

    def describe(self) -> str:
        dropped = ", ".join(self.dropped) or "none"
        return (f"accounts bound to certificates: {', '.join(self.accounts)}; default accounts dropped: {dropped}; "
                f"{self.statements} data-plane statements applied; {self.tenants} assessment tenants seeded")


def check_account_host(pattern: str) -> str:
    if not ACCOUNT_HOST.match(pattern) or pattern == "localhost":
        raise UserError(f"--account-host {pattern!r} is not a host pattern for network accounts "
                        "(e.g. 10.0.0.% or 10.0.0.0/255.255.255.0; not localhost, no quotes)")
    return pattern


def _login_accounts(target: Target, account_host: str) -> list[LoginAccount]:
    accounts = []
    for role, expected in LOGIN_ACCOUNTS.items():
        identity = target.roles.get(role)
        if identity is None:
            raise UserError(f"the target has no {role} role: the data plane needs its account {expected}")
        if identity.user != expected:
            raise UserError(f"the target's {role} role logs in as {identity.user!r}, but the data plane's grants "
                            f"(provision/sql/050_grants.sql) are for {expected!r}")
        if identity.cert is None or identity.password is None:
            raise UserError(f"the target's {role} role needs a client certificate and a password reference")
        if not identity.cert.is_file():
            raise UserError(f"certificate of the {role} role not found: {identity.cert}")
        accounts.append(LoginAccount(user=identity.user, host=account_host, password=identity.password.reveal(),
                                     cert=identity.cert))
    return accounts


def seed_tenants(conn: pymysql.connections.Connection, tenants: dict, app: str, auditor: str,
                 database: str = DATABASE) -> int:
    """The [tenants] of the target: 'granted' to the app and the auditor, 'ungranted' to no
    one, 'auditor_only' to the auditor only (ZTM-TEN-1 reads them)."""
    db = quote_name(database)
    names = [(t, "Assessment tenant") for t in tenants.get("granted", [])]
    names += [(tenants[k], f"Assessment tenant ({k})") for k in ("ungranted", "auditor_only") if k in tenants]
    grants = [(user, t) for t in tenants.get("granted", []) for user in (app, auditor)]
    if "auditor_only" in tenants:
        grants.append((auditor, tenants["auditor_only"]))
    with conn.cursor() as cur:
        for tenant_id, name in names:
            cur.execute(f"INSERT IGNORE INTO {db}.tenants (tenant_id, name) VALUES (%s, %s)", (tenant_id, name))
        for user, tenant_id in grants:
            cur.execute(f"INSERT IGNORE INTO {db}.tenant_grants (user_name, tenant_id) VALUES (%s, %s)",
                        (user, tenant_id))
    return len(names)


def current_account(conn: pymysql.connections.Connection) -> tuple[str, str]:
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        (me,) = cur.fetchone()
    user, _, host = me.rpartition("@")
    return user, host


def provision(target: Target, account_host: str) -> ProvisionReport:
    check_account_host(account_host)
    accounts = _login_accounts(target, account_host)  # every input checked before anything changes
    try:
        conn = connect(target, target.roles["admin"])
    except pymysql.err.OperationalError as exc:
        raise UserError(f"cannot connect to {target.name} through the admin path: {exc.args[-1]}") from None
    report = ProvisionReport()
    try:
        report.dropped = drop_default_accounts(conn, keep=current_account(conn))
        for account in accounts:
            apply_login_account(conn, account)
            report.accounts.append(f"{account.user}@{account.host}")
        probe = target.roles.get("probe")
        if probe is not None and probe.password is not None:
            apply_probe_account(conn, probe.user, account_host, probe.password.reveal())
        report.statements = schema.apply(conn, account_host=account_host, database=target.database)
        if target.section("tenants"):
            report.tenants = seed_tenants(conn, target.section("tenants"), target.roles["app"].user,
                                          target.roles["auditor"].user, target.database)
    except pymysql.MySQLError as exc:
        raise UserError(f"provisioning {target.name} failed: {exc.args[-1]}") from None
    finally:
        conn.close()
    return report


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("database", help="accounts bound to certificates and the data plane, on any server")
    db.add_argument("--target", type=Path, required=True, help="target file: admin path, role certificates")
    db.add_argument("--account-host", required=True, metavar="PATTERN",
                    help="host part of the login accounts, e.g. 10.0.0.%% (the clients' network)")
    db.add_argument("--init-file", type=Path, metavar="PATH",
                    help="also write the SQL the server must run at every start (empties stale tenant contexts, "
                         "as the lab's server does) to PATH, for its init_file option")
    db.set_defaults(func=_main)


def declare_to_anchor(target: Target) -> str:
    """Re-applied triggers may change the audit DDL digest: declare it in a new anchor when this
    host holds the anchor key, else say where to declare it (the anchor would report it)."""
    key = target.section("anchor").get("signing_key")
    if not key:
        return ("no anchor key on this host: if the audit DDL changed, run 'ztm anchor once --ddl-change REASON' "
                "on the anchor host")
    if not target.resolve(key).is_file():
        return f"anchor key {target.resolve(key)} not found: declare any audit DDL change on the anchor host"
    record = declare_schema_change(target.path, "audit schema applied by 'ztm provision database'")
    return "audit DDL unchanged" if record is None else (
        f"audit DDL change declared in anchor {record['checkpoint']['anchor_seq']}")


def _main(args: argparse.Namespace) -> int:
    check_account_host(args.account_host)
    target = load_target(args.target)
    report = provision(target, args.account_host)
    print(f"provisioned {args.target}: {report.describe()}")
    if args.init_file is not None:
        try:
            write_private(args.init_file, schema.init_sql(target.database), mode=0o640)
        except OSError as exc:
            raise UserError(f"cannot write {args.init_file}: {exc.strerror}") from None
        print(f"wrote {args.init_file}: set 'init_file = {args.init_file.resolve()}' in the server's [mysqld] section "
              "(readable by the server's account) so every start empties stale tenant contexts")
    if target.section("anchor"):
        print(declare_to_anchor(target))
    return 0
