"""The objects of the target's database as information_schema shows them: routines, views,
triggers, base tables and their primary keys.

    >>> objects = SchemaObjects(admin, target.database)
    >>> [r.name for r in objects.routines if r.security != "DEFINER"]
    []
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pymysql


@dataclass(frozen=True)
class Routine:
    kind: str  # PROCEDURE or FUNCTION
    name: str
    security: str  # DEFINER or INVOKER
    definer: str  # user@host
    body: str


@dataclass(frozen=True)
class View:
    name: str
    security: str
    definer: str


@dataclass(frozen=True)
class Trigger:
    table: str
    timing: str  # BEFORE or AFTER
    event: str  # INSERT, UPDATE or DELETE
    name: str
    definer: str
    body: str


class SchemaObjects:
    """Read once per instance, through a connection that can see the definitions (the admin path)."""

    def __init__(self, conn: pymysql.connections.Connection, database: str) -> None:
        self.conn, self.database = conn, database

    def _rows(self, sql: str) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, (self.database,))
            return list(cur.fetchall())

    @cached_property
    def routines(self) -> list[Routine]:
        rows = self._rows("SELECT ROUTINE_TYPE, ROUTINE_NAME, SECURITY_TYPE, DEFINER, ROUTINE_DEFINITION "
                          "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_NAME")
        return [Routine(kind, name, security, definer, body or "") for kind, name, security, definer, body in rows]

    @cached_property
    def views(self) -> list[View]:
        return [View(*row) for row in self._rows(
            "SELECT TABLE_NAME, SECURITY_TYPE, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s "
            "ORDER BY TABLE_NAME")]

    @cached_property
    def triggers(self) -> list[Trigger]:
        return [Trigger(*row) for row in self._rows(
            "SELECT EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, TRIGGER_NAME, DEFINER, ACTION_STATEMENT "
            "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s")]

    @cached_property
    def primary_keys(self) -> dict[str, list[str]]:
        """Every base table -> its primary-key columns (empty: none), in table order."""
        tables: dict[str, list[str]] = {}
        for table, column in self._rows(
                "SELECT t.TABLE_NAME, c.COLUMN_NAME FROM information_schema.TABLES t LEFT JOIN "
                "information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME "
                "AND c.COLUMN_KEY = 'PRI' WHERE t.TABLE_SCHEMA = %s AND t.TABLE_TYPE = 'BASE TABLE' "
                "ORDER BY t.TABLE_NAME, c.ORDINAL_POSITION"):
            tables.setdefault(table, [])
            if column:
                tables[table].append(column)
        return tables

    @property
    def base_tables(self) -> list[str]:
        return sorted(self.primary_keys)
