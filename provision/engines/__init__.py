"""Server engines: how to install, initialise and start MariaDB or MySQL."""

from __future__ import annotations

from provision.engines.base import Engine


def engine_for(name: str) -> Engine:
    if name == "mariadb":
        from provision.engines.mariadb import MariaDBEngine

        return MariaDBEngine()
    if name == "mysql":
        from provision.engines.mysql import MySQLEngine

        return MySQLEngine()
    raise ValueError(f"unknown engine {name!r}")
