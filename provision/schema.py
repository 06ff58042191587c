"""Apply the data plane (provision/sql/*.sql) to a server, idempotently, on either engine.

The SQL files are the source of truth; they use the mysql client's ``DELIMITER`` syntax
for routine bodies and ``${name}`` placeholders for deployment facts (the account host, the
database name).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pymysql

from ztm.data_plane import DATABASE
from ztm.db import quote_name
from ztm.errors import UserError

SQL_DIR = Path(__file__).resolve().parent / "sql"
INIT_FILE = "000_init.sql"
STARTUP_FILE = "startup.sql"  # init_file only: never run by the installer


def sql_dir() -> Path:
    return SQL_DIR if SQL_DIR.is_dir() else Path(str(resources.files("provision").joinpath("sql")))


def sql_files() -> list[Path]:
    return sorted(sql_dir().glob("[0-9][0-9][0-9]_*.sql"))


def split_statements(text: str) -> list[str]:
    """Statements of a file written for the mysql client: ';' ends a statement unless a
    ``DELIMITER`` line changed it; the delimiter must end its line. Comment lines are dropped."""
    statements: list[str] = []
    delimiter, current = ";", []
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        if stripped.upper().startswith("DELIMITER "):
            delimiter = stripped.split(None, 1)[1]
            continue
        if stripped.endswith(delimiter):
            current.append(line.rstrip()[: -len(delimiter)])
            statements.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    if any(part.strip() and not part.strip().startswith("--") for part in current):
        raise ValueError(f"unterminated statement at the end: {' '.join(current)[:80]}")
    return [s for s in statements if s]


PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def render(path: Path, facts: dict[str, str]) -> str:
    """Replace ``${name}`` (and nothing else: '$' also appears in regular expressions)."""

    def fact(match: re.Match[str]) -> str:
        if match[1] not in facts:
            raise UserError(f"{path.name} needs the deployment fact {match[1]!r}")
        return facts[match[1]]

    return PLACEHOLDER.sub(fact, path.read_text())


def init_sql(database: str = DATABASE) -> str:
    """What the server runs at every start (its init_file), for ``database``."""
    facts = {"database": database_fact(database)}
    return render(sql_dir() / INIT_FILE, facts) + "\n" + render(sql_dir() / STARTUP_FILE, facts)


def database_fact(database: str) -> str:
    """The database name as the SQL files use it (bare, and inside quotes): only names that
    need no quoting are accepted."""
    quote_name(database)  # UserError for anything but letters, digits and underscore
    return database


def apply(conn: pymysql.connections.Connection, *, account_host: str, database: str = DATABASE) -> int:
    """Run every SQL file in order as the admin; returns the number of statements."""
    facts = {"account_host": account_host, "database": database_fact(database)}
    count = 0
    with conn.cursor() as cur:
        for path in sql_files():
            for statement in split_statements(render(path, facts)):
                try:
                    cur.execute(statement)
                except pymysql.MySQLError as exc:
                    raise UserError(f"{path.name}: {exc.args[-1]} (in: {statement.splitlines()[0][:100]})") from None
                while cur.nextset():
                    pass
                count += 1
            if path.name == INIT_FILE:
                _upgrade_session_table(cur, database)
                _refuse_single_chain(cur, database)
    return count


def _refuse_single_chain(cur, database: str) -> None:
    """A trail of the single-chain shape (before lanes) is not rewritten in place: its rows
    and anchors would have to be re-hashed, which is what the trail exists to prevent."""
    cur.execute("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
                "TABLE_NAME = 'audit_chain_head' AND COLUMN_NAME = 'id'", (database,))
    if cur.fetchone()[0]:
        raise UserError(f"{database}.audit_chain_head is of the single-chain shape (before audit lanes): export and "
                        "archive that trail ('ztm audit export' with the version that wrote it), then install into a "
                        "new database; this version does not rewrite a trail in place")


def _upgrade_session_table(cur, database: str) -> None:
    """A tenant_context from before session keys gets the column (its rows then match no
    session: their connections never received a key). Live contexts are otherwise untouched."""
    cur.execute("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
                "TABLE_NAME = 'tenant_context' AND COLUMN_NAME = 'session_key'", (database,))
    if cur.fetchone()[0] == 0:
        cur.execute(f"ALTER TABLE {quote_name(database)}.tenant_context ADD COLUMN session_key BINARY(16) NOT NULL "
                    "DEFAULT x'00000000000000000000000000000000' AFTER tenant_id")
