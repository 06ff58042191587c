"""Server variables: read them live and from the configuration files, compare normalised."""

from __future__ import annotations

import configparser
import json
from typing import Any

import pymysql

LIST_VARIABLES = {"sql_mode", "ssl_cipher", "tls_ciphersuites", "tls_version"}
BOOLEAN_TRUE = {"1", "on", "true", "yes", "force_plus_permanent"}
BOOLEAN_FALSE = {"0", "off", "false", "no"}


def normalise_name(name: str) -> str:
    """my.cnf accepts dashes and an optional loose- prefix; variables use underscores."""
    name = name.strip().lower().replace("-", "_")
    return name.removeprefix("loose_")


def normalise_value(name: str, value: str | None) -> str | frozenset[str]:
    """Make live and on-disk spellings comparable ('0' vs 'OFF', list order)."""
    text = "" if value is None else str(value).strip().strip("'\"")
    if name in LIST_VARIABLES:
        sep = ":" if name in {"ssl_cipher", "tls_ciphersuites"} else ","
        return frozenset(part.strip().upper() for part in text.split(sep) if part.strip())
    lowered = text.lower()
    if lowered in BOOLEAN_TRUE:
        return "ON"
    if lowered in BOOLEAN_FALSE:
        return "OFF"
    return text


def live_variables(conn: pymysql.connections.Connection, names: list[str]) -> dict[str, str | None]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES")
        values = {name.lower(): value for name, value in cur.fetchall()}
    return {name: values.get(name) for name in names}


def parse_mycnf(text: str, sections: tuple[str, ...] = ("mysqld", "server", "mariadb", "mariadbd")) -> dict[str, str]:
    """The [mysqld]-family options of one my.cnf file (later sections and lines win)."""
    parser = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None,
                                       comment_prefixes=("#", ";"), inline_comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("!")]  # !include dirs
    parser.read_string("\n".join(lines))
    options: dict[str, str] = {}
    for section in parser.sections():
        if section.lower() in sections:
            for key, value in parser.items(section):
                options[normalise_name(key)] = "ON" if value is None else value
    return options


def parse_persisted(text: str) -> dict[str, str]:
    """MySQL's mysqld-auto.cnf (SET PERSIST), either format:
    version 1 ``{"mysql_server": {"name": {"Value": ...}, "mysql_server_static_options": {...}}}``,
    version 2 ``{"Version": 2, "mysql_dynamic_variables": {"name": {"Value": ...}}, ...}``."""
    flat: dict[str, str] = {}

    def walk(group: dict[str, Any]) -> None:
        for key, entry in group.items():
            if isinstance(entry, dict) and "Value" in entry:
                flat[normalise_name(key)] = str(entry["Value"])
            elif isinstance(entry, dict):
                walk(entry)

    doc = json.loads(text)
    walk(doc if isinstance(doc, dict) else {})
    return flat


def mismatches(expected: dict[str, str], observed: dict[str, str | None]) -> list[str]:
    """Human-readable differences, one per variable."""
    problems = []
    for name, want in expected.items():
        got = observed.get(name)
        if got is None:
            problems.append(f"{name} is not set (expected {want})")
        elif normalise_value(name, got) != normalise_value(name, want):
            problems.append(f"{name} = {got} (expected {want})")
    return problems
