"""The stock-server lane (issue 14): a stock Debian MariaDB, started here as a process (its
own datadir, socket and port in a temp folder, loopback only, Debian's defaults otherwise),
assessed with the smallest target file (one login role plus admin). Every control must fail
or be not assessed with a reason, never pass silently, never error, never show a driver
traceback; the verdicts are compared with tests/stock/expected-mariadb.toml."""

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
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sql(sock: Path, statement: str) -> None:
    subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={sock}", "-e", statement], check=True,
                   capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def stock_mariadb():
    if os.environ.get("ZTM_ENGINE", "mariadb") != "mariadb":
        pytest.skip("the stock MariaDB lane runs once, in the mariadb lab lane (ZTM_ENGINE=mariadb)")
    if os.geteuid() != 0 or not shutil.which("mariadbd"):
        pytest.skip("the stock lane needs root and Debian's mariadb-server")
    base = Path(tempfile.mkdtemp(prefix="ztm-stock-mariadb-"))  # the server account must reach it
    datadir, sock, port = base / "data", base / "mysqld.sock", _free_port()
    shutil.chown(base, "mysql", "mysql")
    os.chmod(base, 0o755)
    subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={datadir}", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    # Debian's configuration (/etc/mysql/my.cnf and its drop-ins); only where it lives is ours.
    server = subprocess.Popen(["mariadbd", "--defaults-file=/etc/mysql/my.cnf", "--user=mysql",
                               f"--datadir={datadir}", f"--socket={sock}", f"--port={port}",
                               "--bind-address=127.0.0.1", f"--pid-file={base / 'mysqld.pid'}",
                               f"--log-error={base / 'error.log'}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the stock MariaDB did not start: {(base / 'error.log').read_text()[-2000:]}")
            time.sleep(0.2)
        secret = base / "probe.pw"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(12).hex().encode() + b"\n")
        os.close(fd)
        pw = secret.read_text().strip()
        # A stock server's own accounts stay as they are; the assessor adds the two it logs in as.
        _sql(sock, f"CREATE USER ztm_admin@localhost IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO ztm_admin@localhost; "
                   f"CREATE USER ztm_probe@'%' IDENTIFIED BY '{pw}'; CREATE DATABASE appdb")
        target = base / "target.toml"
        target.write_text(f'[target]\nname = "stock-mariadb"\nengine = "mariadb"\nhost = "127.0.0.1"\n'
                          f'port = {port}\ndatabase = "appdb"\n\n'
                          f'[roles.admin]\nuser = "ztm_admin"\nsocket = "{sock}"\npassword = {{file = "{secret}"}}\n\n'
                          f'[roles.probe]\nuser = "ztm_probe"\npassword = {{file = "{secret}"}}\n')
        yield target
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _verdicts(junit: Path) -> tuple[dict[str, str], list[str]]:
    """Control verdicts (failed / not-assessed / passed / not-applicable) from a JUnit file, and errors."""
    per: dict[str, list[str]] = {}
    errors = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        m = re.match(r"test_([a-z]+)_(\d)_", module)
        control = f"ZTM-{m.group(1).upper()}-{m.group(2)}" if m else module
        if case.find("error") is not None:
            errors.append(f"{case.get('name')}: {case.find('error').get('message')}")
        skipped = case.find("skipped")
        outcome = ("failed" if case.find("failure") is not None or case.find("error") is not None else
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


def test_stock_mariadb_gets_a_reason_for_every_control_and_no_traceback(stock_mariadb, tmp_path):
    junit = tmp_path / "junit.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "controls", "-p", "no:randomly", "-q", "-rfEs",
                          "--target", str(stock_mariadb), f"--junitxml={junit}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    report = run.stdout + run.stderr
    verdicts, errors = _verdicts(junit)
    assert not errors, "pytest errors on a stock server:\n" + "\n".join(errors)
    assert "Traceback" not in report and "pymysql/" not in report and "site-packages" not in report, report[-6000:]
    expected = tomllib.loads((HERE / "expected-mariadb.toml").read_text())["verdicts"]
    assert verdicts == expected, f"verdicts differ from expected-mariadb.toml:\n{verdicts}\n{report[-4000:]}"
    assert "passed" not in verdicts.values(), "a stock server passed a control"
