"""SHOW GRANTS lines, parsed into (privilege, object kind, database, object) facts."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
