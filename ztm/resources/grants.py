"""SHOW GRANTS lines, parsed into (privilege, object kind, database, object) facts, and an
account's effective grants: its own, its roles' (recursively), PUBLIC's and mandatory roles'."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pymysql

from ztm.dialect import Dialect

_GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON (?:(?P<kind>PROCEDURE|FUNCTION) )?(?P<object>\S+) TO ", re.IGNORECASE)
# Privileges that change data or structure of a table they apply to.
WRITE_PRIVILEGES = {"INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "CREATE", "TRIGGER", "INDEX", "REFERENCES",
                    "ALL PRIVILEGES", "ALL", "DELETE HISTORY", "CREATE VIEW"}


@dataclass(frozen=True)
class Grant:
    privilege: str
    kind: str  # TABLE, PROCEDURE or FUNCTION
    database: str  # '*' for global
    object: str  # '*' for every object of the database
    line: str

    @property
    def is_global(self) -> bool:
        return self.database == "*"

    def covers(self, database: str, obj: str) -> bool:
        """Does this grant apply to database.obj (directly, at database level, or globally)?"""
        if self.is_global:
            return True
        pattern = "^" + re.escape(self.database).replace("%", ".*").replace("_", ".") + "$"
        matches_db = self.database == database or bool(re.match(pattern, database))
        return matches_db and (self.object in ("*", obj))


def _split_privileges(text: str) -> list[str]:
    # "SELECT (a, b), INSERT" -> ["SELECT", "INSERT"]: column lists are dropped.
    text = re.sub(r"\([^)]*\)", "", text)
    return [p.strip().upper() for p in text.split(",") if p.strip()]


def parse(lines: list[str]) -> list[Grant]:
    grants = []
    for line in lines:
        match = _GRANT.match(line)
        if not match:  # role grants ("GRANT `r` TO ...") and PROXY lines carry no object privileges
            continue
        db, _, obj = match["object"].replace("`", "").partition(".")
        kind = (match["kind"] or "TABLE").upper()
        for privilege in _split_privileges(match["privs"]):
            grants.append(Grant(privilege, kind, db, obj, line))
    return grants


# -- Effective grants: an account's own, its roles' (recursively), PUBLIC's, mandatory roles' --
_ROLE = r"`(?:[^`]|``)*`(?:@`(?:[^`]|``)*`)?"
_ROLE_LINE = re.compile(rf"^GRANT (?P<roles>{_ROLE}(?:\s*,\s*{_ROLE})*) TO ", re.IGNORECASE)
_QUOTED = re.compile(r"`((?:[^`]|``)*)`(?:@`((?:[^`]|``)*)`)?")


@dataclass(frozen=True)
class Grantee:
    """Something SHOW GRANTS can be asked about: an account, a role, or PUBLIC."""

    user: str
    host: str | None  # None: a MariaDB role or PUBLIC (no host part)

    @property
    def label(self) -> str:
        if self.host is None:
            return "PUBLIC" if self.user == "PUBLIC" else f"role '{self.user}'"
        return f"'{self.user}'@'{self.host}'"


def roles_granted(lines: list[str], dialect: Dialect) -> list[Grantee]:
    """The roles named by role-grant lines ("GRANT `r` TO ..." / "GRANT `r`@`%` TO ...")."""
    roles = []
    for line in lines:
        match = _ROLE_LINE.match(line)
        if match:
            for name, host in _QUOTED.findall(match["roles"]):
                name = name.replace("``", "`")
                roles.append(Grantee(name, (host.replace("``", "`") or "%") if dialect.role_has_host else None))
    return roles


def parse_role_list(value: str, dialect: Dialect) -> list[Grantee]:
    """mandatory_roles: "`r1`@`%`,r2@localhost,r3" (quotes optional, host defaults to %)."""
    roles = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, _, host = item.partition("@")
        name, host = name.strip("`'\" "), host.strip("`'\" ") or "%"
        roles.append(Grantee(name, host if dialect.role_has_host else None))
    return roles


def show_grants(conn: pymysql.connections.Connection, grantee: Grantee) -> list[str]:
    """SHOW GRANTS for any grantee, password hashes redacted. Raises pymysql errors."""
    from ztm.resources.accounts import grants_for

    if grantee.host is not None:
        return grants_for(conn, grantee.user, grantee.host)
    with conn.cursor() as cur:
        if grantee.user == "PUBLIC":
            cur.execute("SHOW GRANTS FOR PUBLIC")
        else:
            cur.execute("SHOW GRANTS FOR %s", (grantee.user,))
        return [row[0] for row in cur.fetchall()]


@dataclass
class EffectiveGrants:
    """Where every privilege of an account comes from, and what could not be read."""

    account: str
    sources: dict[str, list[str]]
    unreadable: dict[str, str]

    def grants(self) -> list[tuple[str, Grant]]:
        """(where it comes from, the grant) for every privilege the account can use."""
        return [(source, g) for source, lines in self.sources.items() for g in parse(lines)]

    def to_dict(self) -> dict[str, object]:
        return {"account": self.account, "sources": self.sources, "unreadable": self.unreadable}


def shared_grantees(conn: pymysql.connections.Connection, dialect: Dialect) -> tuple[list[Grantee], dict[str, str]]:
    """Grantees whose privileges every account holds: PUBLIC (MariaDB 10.11) and the
    mandatory roles (MySQL)."""
    shared: list[Grantee] = []
    problems: dict[str, str] = {}
    if dialect.public_role:
        shared.append(Grantee("PUBLIC", None))
    if dialect.mandatory_roles_variable:
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL VARIABLES LIKE %s", (dialect.mandatory_roles_variable,))
                row = cur.fetchone()
        except pymysql.MySQLError as exc:
            problems[dialect.mandatory_roles_variable] = str(exc.args[-1])
        else:
            if row is None:
                problems[dialect.mandatory_roles_variable] = "the variable is not visible to the admin path"
            else:
                shared += parse_role_list(row[1] or "", dialect)
    return shared, problems


def effective_grants(conn: pymysql.connections.Connection, dialect: Dialect, user: str, host: str,
                     shared: list[Grantee]) -> EffectiveGrants:
    """The account's own grants, every role reachable from them (a role can hold roles),
    and the shared grantees. A grantee whose grants cannot be read is recorded, not skipped."""
    account = Grantee(user, host)
    result = EffectiveGrants(account.label, {}, {})
    queue, seen = [account, *shared], set()
    while queue:
        grantee = queue.pop(0)
        if grantee in seen:
            continue
        seen.add(grantee)
        try:
            lines = show_grants(conn, grantee)
        except pymysql.MySQLError as exc:
            if grantee.user == "PUBLIC" and exc.args[0] == 1064:
                continue  # MariaDB before 10.11 has no PUBLIC: nothing can be granted to it
            result.unreadable[grantee.label] = str(exc.args[-1])
            continue
        result.sources[grantee.label] = lines
        queue += roles_granted(lines, dialect)
    return result
