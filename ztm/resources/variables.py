"""Server variables: read them live and from the configuration files, compare normalised."""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pymysql

from ztm.dialect import Dialect

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


# Both engines' groups: for a text whose engine is not known (dialect.option_groups knows).
SERVER_SECTIONS = ("mysqld", "server", "mariadb", "mariadbd", "client-server")
# Real option names that start with skip_; any other skip-X means X = OFF (as enable-X means ON).
SKIP_OPTIONS = {"skip_name_resolve", "skip_networking", "skip_show_database", "skip_external_locking",
                "skip_grant_tables", "skip_slave_start", "skip_replica_start"}
MAX_INCLUDE_DEPTH = 10  # the servers stop at a similar depth; a loop must not hang the check


def server_sections(dialect: Dialect, version: str | None) -> tuple[str, ...]:
    """The option groups the server reads, with the version-specific ones ([mariadb-10.11])."""
    match = re.match(r"^\s*(\d+\.\d+)", version or "")
    if not match:
        return dialect.option_groups
    return (*dialect.option_groups, *(f"{group}-{match[1]}" for group in dialect.versioned_option_groups))


def _option(line: str) -> tuple[str, str]:
    """One 'name = value' line as (variable, value), prefixes resolved."""
    key, sep, value = line.partition("=")
    name = normalise_name(key)
    value = value.strip() if sep else "ON"
    for prefix, forced in (("enable_", "ON"), ("disable_", "OFF"), ("skip_", "OFF")):
        if name.startswith(prefix) and name not in SKIP_OPTIONS:
            return name.removeprefix(prefix), forced if not sep else value if forced == "ON" else "OFF"
    return name, value


def command_line_options(args: str) -> dict[str, str]:
    """The ``--name[=value]`` options of a server command line, named and valued as in a
    configuration file (``--loose-`` dropped, prefixes such as ``--skip-`` resolved)."""
    options = {}
    for word in args.split():
        if word.startswith("--") and len(word) > 2:
            name, value = _option(word[2:].removeprefix("loose-").removeprefix("loose_"))
            options[name] = value
    return options


def _strip_comment(line: str) -> str:
    """What the servers do: '#' starts a comment anywhere outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if char in "'\"":
            quote = "" if quote == char else (quote or char)
        elif char == "#" and not quote:
            return line[:i]
    return line


@dataclass
class ConfigRead:
    """The [mysqld]-family options of a configuration, includes followed; later wins."""

    options: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # option -> file that set it last
    files: list[str] = field(default_factory=list)  # in the order the server reads them
    missing: list[str] = field(default_factory=list)  # includes that name nothing


class ConfigSource(Protocol):
    """Where configuration files are read: a testinfra host, or the local file system."""

    def read(self, path: str) -> str | None: ...

    def listdir(self, path: str) -> list[str] | None: ...


def read_config(source: ConfigSource, path: str, sections: tuple[str, ...] = SERVER_SECTIONS,
                into: ConfigRead | None = None, depth: int = 0) -> ConfigRead:
    """Read ``path`` as the server does: sections, ``!include FILE`` and ``!includedir DIR``
    (that folder's *.cnf files, in name order) at the place they appear, later values win.
    A relative include is taken relative to the including file's folder."""
    found = into if into is not None else ConfigRead()
    text = source.read(path)
    if text is None:
        found.missing.append(path)
        return found
    found.files.append(path)
    folder = posixpath.dirname(path)
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!"):
            directive, _, argument = line[1:].partition(" ")
            target = posixpath.join(folder, _strip_comment(argument).strip())
            if depth >= MAX_INCLUDE_DEPTH:
                found.missing.append(f"{target} (includes nested deeper than {MAX_INCLUDE_DEPTH})")
            elif directive == "include":
                read_config(source, target, sections, found, depth + 1)
            elif directive == "includedir":
                names = source.listdir(target)
                if names is None:
                    found.missing.append(target + "/")
                for name in sorted(names or []):
                    if name.endswith(".cnf"):
                        read_config(source, posixpath.join(target, name), sections, found, depth + 1)
            continue
        if line.startswith("["):
            section = line[1:].split("]", 1)[0].strip().lower()
            continue
        if section in sections:
            name, value = _option(_strip_comment(line).strip())
            found.options[name] = value
            found.origin[name] = path
    return found


class LocalFiles:
    """A ConfigSource on this machine's file system."""

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def listdir(self, path: str) -> list[str] | None:
        folder = Path(path)
        return [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else None


def parse_mycnf(text: str, sections: tuple[str, ...] = SERVER_SECTIONS) -> dict[str, str]:
    """The [mysqld]-family options of one my.cnf text, includes not followed."""

    class _One:
        def read(self, path: str) -> str | None:
            return text if path == "my.cnf" else None

        def listdir(self, path: str) -> list[str] | None:
            return None

    return read_config(_One(), "my.cnf", sections).options


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


class HostFiles:
    """A ConfigSource on a testinfra host (the target's database host)."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def read(self, path: str) -> str | None:
        f = self.host.file(path)
        return f.content_string if f.exists and f.is_file else None

    def listdir(self, path: str) -> list[str] | None:
        f = self.host.file(path)
        if not (f.exists and f.is_directory):
            return None
        return [name for name in f.listdir() if self.host.file(posixpath.join(path, name)).is_file]
