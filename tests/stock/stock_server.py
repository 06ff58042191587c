"""What the stock-server lanes share (issue 14): start a server with its package's defaults as a
plain process (its own datadir, socket and port in a temp folder, loopback only), write the
smallest target file (admin over the socket plus one probe role), assess it in a separate
pytest process, and compare the control verdicts with a committed table."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@dataclass(frozen=True)
class StockServer:
    engine: str
    base: Path  # the temp folder holding datadir, socket, logs and the target file
    port: int
    socket: Path
    sql: Callable[[str], None]  # runs statements as the server's own root account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _new_base(engine: str) -> Path:
    # One level below a folder of our own: MySQLEngine.detach removes the mount point and its
    # parent if empty, which must never be the rootfs's /tmp.
    parent = Path(tempfile.gettempdir()) / "ztm-stock"
    parent.mkdir(mode=0o755, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=parent))
    shutil.chown(base, "mysql", "mysql")  # the server account must reach it
    os.chmod(base, 0o755)
    return base


def _wait_for_socket(server: subprocess.Popen[bytes], sock: Path, log: Path, what: str) -> None:
    deadline = time.monotonic() + 90
    while not sock.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "no error log"
            pytest.fail(f"the stock {what} did not start: {tail}")
        time.sleep(0.2)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def require_stock_lane(engine: str, binary: str | None = None) -> None:
    """Each stock lane runs once, in its engine's lab lane, as root."""
    if os.environ.get("ZTM_ENGINE", "mariadb") != engine:
        pytest.skip(f"the stock {engine} lane runs once, in the {engine} lab lane (ZTM_ENGINE={engine})")
    if os.geteuid() != 0:
        pytest.skip("the stock lane needs root (the server runs as the mysql account)")
    if binary and not shutil.which(binary):
        pytest.skip(f"the stock {engine} lane needs {binary}")


@contextmanager
def stock_mariadb() -> Iterator[StockServer]:
    """Debian's MariaDB with Debian's configuration (/etc/mysql/my.cnf and its drop-ins);
    only where it lives is ours."""
    base = _new_base("mariadb")
    datadir, sock, port = base / "data", base / "mysqld.sock", free_port()
    try:
        subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={datadir}", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        server = subprocess.Popen(["mariadbd", "--defaults-file=/etc/mysql/my.cnf", "--user=mysql",
                                   f"--datadir={datadir}", f"--socket={sock}", f"--port={port}",
                                   "--bind-address=127.0.0.1", f"--pid-file={base / 'mysqld.pid'}",
                                   f"--log-error={base / 'error.log'}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_socket(server, sock, base / "error.log", "MariaDB")

            def sql(statement: str) -> None:
                subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={sock}", "-e", statement],
                               check=True, capture_output=True, timeout=30)

            yield StockServer("mariadb", base, port, sock, sql)
        finally:
            _stop(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def stock_mysql() -> Iterator[StockServer]:
    """The lab's MySQL (Debian's mysql-server-core in the cached rootfs, ztm.provision.engines.mysql)
    with MySQL's compiled-in defaults (--no-defaults: the package ships no my.cnf), a datadir
    made by --initialize-insecure as a fresh install does (root@localhost without a password,
    auto-generated TLS certificates). Only where it lives and listens is ours."""
    from provision.engines.base import default_cache_dir
    from provision.engines.mysql import MySQLEngine

    engine = MySQLEngine()
    engine.install(default_cache_dir())  # builds the rootfs only if the cache lacks it
    base = _new_base("mysql")
    engine.attach(base)  # the temp folder appears at the same path inside the rootfs
    datadir, sock, port = base / "data", base / "mysqld.sock", free_port()
    # Debian's build points secure_file_priv at /var/lib/mysql-files, which the package's
    # postinst creates (mode 0700, the server's): ours lives in the temp folder.
    secure_files = base / "mysql-files"
    common = ["mysqld", "--no-defaults", "--user=mysql", f"--datadir={datadir}", f"--secure-file-priv={secure_files}"]
    try:
        secure_files.mkdir(mode=0o700)
        shutil.chown(secure_files, "mysql", "mysql")
        init = subprocess.run([*engine.run_prefix(), *common, "--initialize-insecure",
                               f"--log-error={base / 'init.log'}"], capture_output=True, text=True, timeout=180)
        if init.returncode != 0:
            log = base / "init.log"
            pytest.fail(f"mysqld --initialize-insecure failed: {init.stderr[-1000:]} "
                        f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
        # The X plugin stays on, as in a stock install, on a free loopback port of its own.
        server = subprocess.Popen([*engine.run_prefix(), *common, f"--socket={sock}", f"--port={port}",
                                   "--bind-address=127.0.0.1", f"--pid-file={base / 'mysqld.pid'}",
                                   f"--log-error={base / 'error.log'}", f"--mysqlx-port={free_port()}",
                                   "--mysqlx-bind-address=127.0.0.1", f"--mysqlx-socket={base / 'mysqlx.sock'}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_socket(server, sock, base / "error.log", "MySQL")

            def sql(statement: str) -> None:
                import pymysql

                conn = pymysql.connect(unix_socket=str(sock), user="root", password="", autocommit=True)
                try:
                    with conn.cursor() as cur:
                        for part in filter(None, (s.strip() for s in statement.split(";"))):
                            cur.execute(part)
                finally:
                    conn.close()

            yield StockServer("mysql", base, port, sock, sql)
        finally:
            _stop(server)
    finally:
        engine.detach(base)
        shutil.rmtree(base, ignore_errors=True)


def minimal_target(server: StockServer) -> Path:
    """The smallest target file that works: the admin over the socket and one probe role.
    A stock server's own accounts stay as they are; the assessor adds the two it logs in as."""
    secret = server.base / "probe.pw"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(12).hex().encode() + b"\n")
    os.close(fd)
    pw = secret.read_text().strip()
    server.sql(f"CREATE USER ztm_admin@localhost IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO ztm_admin@localhost; "
               f"CREATE USER ztm_probe@'%' IDENTIFIED BY '{pw}'; CREATE DATABASE appdb")
    target = server.base / "target.toml"
    target.write_text(f'[target]\nname = "stock-{server.engine}"\nengine = "{server.engine}"\nhost = "127.0.0.1"\n'
                      f'port = {server.port}\ndatabase = "appdb"\n\n'
                      f'[roles.admin]\nuser = "ztm_admin"\nsocket = "{server.socket}"\n'
                      f'password = {{file = "{secret}"}}\n\n'
                      f'[roles.probe]\nuser = "ztm_probe"\npassword = {{file = "{secret}"}}\n')
    return target


@dataclass(frozen=True)
class Assessment:
    verdicts: dict[str, str]
    errors: list[str]  # pytest errors (a test that errored instead of concluding)
    report: str  # the assessor's terminal report
    exit_code: int


def assess(target: Path, junit: Path, *extra: str) -> Assessment:
    """Every control against ``target`` in a separate pytest process, as an assessor runs it."""
    run = subprocess.run([sys.executable, "-m", "pytest", "controls", "-p", "no:randomly", "-q", "-rfEs",
                          "--target", str(target), f"--junitxml={junit}", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    verdicts, errors = verdicts_of(junit) if junit.exists() else ({}, ["no JUnit report was written"])
    return Assessment(verdicts, errors, run.stdout + run.stderr, run.returncode)


def verdicts_of(junit: Path) -> tuple[dict[str, str], list[str]]:
    """Control verdicts (failed / not-assessed / passed / partial / not-applicable) from a JUnit
    file, and the tests that errored or were skipped without a reason."""
    per: dict[str, list[str]] = {}
    errors = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        m = re.match(r"test_([a-z]+)_(\d)_", module)
        control = f"ZTM-{m.group(1).upper()}-{m.group(2)}" if m else module
        error = case.find("error")
        if error is not None:
            errors.append(f"{case.get('name')}: {error.get('message')}")
        skipped = case.find("skipped")
        if skipped is not None and not skipped.get("message", "").strip():
            errors.append(f"{case.get('name')}: skipped without a reason")
        outcome = ("failed" if case.find("failure") is not None or error is not None else
                   ("not-applicable" if skipped.get("message", "").startswith("not applicable") else "skipped")
                   if skipped is not None else "passed")
        per.setdefault(control, []).append(outcome)
    verdicts = {}
    for control, outcomes in per.items():
        applicable = [o for o in outcomes if o != "not-applicable"]
        verdicts[control] = ("failed" if "failed" in applicable else "passed" if applicable and
                             all(o == "passed" for o in applicable) else "partial" if "passed" in applicable
                             else "not-assessed" if applicable else "not-applicable")
    return verdicts, errors


def check(assessment: Assessment, expected_file: Path) -> None:
    """No pytest error, no driver traceback in the report, and exactly the expected verdicts."""
    report = assessment.report
    assert not assessment.errors, "pytest errors:\n" + "\n".join(assessment.errors)
    assert "INTERNALERROR" not in report, report[-6000:]
    assert "Traceback" not in report and "pymysql/" not in report and "site-packages" not in report, report[-6000:]
    expected = tomllib.loads(expected_file.read_text())["verdicts"]
    assert assessment.verdicts == expected, (
        f"verdicts differ from {expected_file.name}:\n{assessment.verdicts}\n{report[-4000:]}")


HARDENED_SECTIONS = ("target", "tls", "host")  # transport, configuration and host: no data plane
HARDENED_ROLES = ("admin", "probe")  # the admin path and the transport canary: no data-plane role


def minimal_hardened_target(full_target: Path, out: Path, database: str) -> Path:
    """The lab's target file cut down to transport, configuration and host: [target] (naming
    ``database``, which holds no data plane), [tls], [host], the admin and the probe. Nothing
    of the data plane, its roles, crypto, tenants, network vantage points or anchors."""
    import tomli_w

    doc = tomllib.loads(full_target.read_text())
    cut = {name: doc[name] for name in HARDENED_SECTIONS if name in doc}
    cut["target"] = {**cut["target"], "database": database}
    cut["roles"] = {role: doc["roles"][role] for role in HARDENED_ROLES}
    out.write_text(tomli_w.dumps(cut))
    return out
