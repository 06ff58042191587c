"""What a control needs, judged from the preflight facts before any fixture touches the server
(ztm.needs): one sentence per test naming the cause, and an unreachable server under xdist is
one line per test, never an xdist crash (issue 14)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from tests.control_runner import CONTROLS, ROOT, _parse_junit
from ztm.data_plane import API_PROCEDURES, AUDIT_TABLES, DATA_TABLES
from ztm.needs import declared, unmet
from ztm.preflight import Facts
from ztm.target import load_target

pytest_plugins = ["pytester"]

TARGET = '''[target]
name = "unit"
engine = "mysql"
host = "127.0.0.1"
port = {port}
database = "d"

[roles.admin]
user = "root"
password = {{env = "ZTM_UNIT_NO_SUCH_VAR"}}

[roles.app]
user = "app_user"
password = {{env = "ZTM_UNIT_NO_SUCH_VAR"}}

[roles.probe]
user = "ztm_probe"
password = {{env = "ZTM_UNIT_NO_SUCH_VAR"}}
'''


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening, then closed: nothing answers there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def target(tmp_path):
    f = tmp_path / "target.toml"
    f.write_text(TARGET.format(port=3306).replace('user = "root"\n', 'user = "root"\nsocket = "/run/m.sock"\n'))
    return load_target(f)


def _facts(**kw) -> Facts:
    base = {"tcp": "ok", "server_version": "8.4.3", "tls_offered": True,
            "logins": {"admin": "ok", "app": "ok", "probe": "ok"}, "data_plane_missing": []}
    return Facts(**{**base, **kw})


def test_needs_come_from_markers_with_parameters_and_from_fixtures():
    needs = declared([("login.{role}", "tenants")], ["target", "admin", "tls_probe"], {"role": "app"})
    assert needs == ["login.app", "tenants", "login.admin", "tls"]


def test_a_missing_input_is_not_assessed_before_anything_is_tried(target):
    verdict = unmet(target, _facts(tcp="no MySQL server answered"), ["login.auditor", "server"])
    assert verdict[0] == "skip" and "no [roles.auditor]" in verdict[1]


def test_an_unreachable_server_fails_naming_the_address(target):
    facts = _facts(tcp="no MySQL server answered at 127.0.0.1:3306: [Errno 111] Connection refused")
    assert unmet(target, facts, ["tls"]) == ("fail", facts.tcp + "; nothing on the database server could be examined")
    # The admin logs in over its socket: its own login fact decides, not TCP.
    assert unmet(target, facts, ["login.admin"]) is None


def test_no_tls_fails_tls_needs_and_tcp_logins_but_not_socket_logins(target):
    facts = _facts(tls_offered=False, logins={"admin": "ok", "app": "refused (error 2026: SSL connection error)"})
    assert "offers no TLS" in unmet(target, facts, ["tls"])[1]
    verdict = unmet(target, facts, ["login.app"])
    assert verdict[0] == "fail" and verdict[1].startswith("the app role (app_user) cannot log in: the server at")
    assert unmet(target, facts, ["login.admin"]) is None


def test_a_refused_login_fails_and_an_untried_one_is_not_assessed(target):
    facts = _facts(logins={"admin": "ok", "app": "refused (error 1045: Access denied for user 'app_user')",
                           "probe": "not tried: not assessed: the target names no CA ([tls].ca)"})
    assert unmet(target, facts, ["login.app"]) == (
        "fail", "the app role (app_user) cannot log in: refused (error 1045: Access denied for user 'app_user')")
    verdict = unmet(target, facts, ["login.probe"])
    assert verdict[0] == "skip" and verdict[1].endswith("could not be tried: the target names no CA ([tls].ca)")


def test_no_data_plane_is_not_assessed_before_the_logins_that_would_probe_it(target):
    facts = _facts(data_plane_missing=list(DATA_TABLES + AUDIT_TABLES + API_PROCEDURES),
                   logins={"app": "refused (error 1045)"})
    assert unmet(target, facts, ["data_plane", "login.app"])[0] == "skip"
    # An unexamined data plane (the admin path refused) comes after the refused login.
    facts = _facts(data_plane_missing=None, data_plane_note="not looked at", logins={"admin": "refused (error 1045)"})
    assert unmet(target, facts, ["data_plane", "login.admin"]) == (
        "fail", "the admin role (root) cannot log in: refused (error 1045)")
    assert unmet(target, facts, ["data_plane"])[0] == "skip"
    facts = _facts(data_plane_missing=[DATA_TABLES[0]])
    assert unmet(target, facts, ["data_plane"]) == ("fail",
                                                    f"the data plane in d is incomplete: missing {DATA_TABLES[0]}")


def test_an_unmet_need_found_in_setup_is_the_tests_failure_not_an_error(pytester, tmp_path):
    """An unmet need (here: no server answers) is the test's failure with its one sentence, found
    before any fixture runs; a pytest error it is not."""
    target = tmp_path / "target.toml"
    target.write_text(TARGET.format(port=_closed_port()))
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.fixture(scope="session")
        def touched():
            raise AssertionError("a fixture ran although the target cannot meet the test's needs")

        @pytest.mark.control("ZTM-TLS-1")
        def test_reads_config(touched, connect):
            pass

        @pytest.mark.control("ZTM-TLS-1")
        @pytest.mark.needs("login.probe")
        def test_logs_in(touched):
            pass
    """))
    run = pytester.runpytest_subprocess("--target", str(target), "-p", "no:randomly", "-rf")
    run.assert_outcomes(failed=2)
    out = run.stdout.str()
    assert "no MySQL server answered at 127.0.0.1:" in out and "a fixture ran" not in out, out
    assert "error" not in out.splitlines()[-1], out


def test_unreachable_server_under_xdist_is_one_line_per_test_and_no_crash(tmp_path):
    port = _closed_port()
    target = tmp_path / "target.toml"
    target.write_text(TARGET.format(port=port))
    junit = tmp_path / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", str(CONTROLS), "-n", "2", "-p", "no:randomly", "-q",
                           "--target", str(target), f"--junitxml={junit}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert "INTERNALERROR" not in out and "Traceback" not in out and "pymysql/" not in out, out[-4000:]
    assert done.returncode == 1, f"exit code {done.returncode}:\n{out[-3000:]}"
    tests = _parse_junit(junit)
    failed = {n: t for n, t in tests.items() if t.outcome != "skipped"}
    assert failed, out[-3000:]
    for name, got in failed.items():
        assert got.outcome == "failed", f"{name}: {got.outcome}: {got.message[:300]}"
        assert f"no MySQL server answered at 127.0.0.1:{port}" in got.message, (name, got.message[:500])
        assert "pymysql" not in got.message and "Traceback" not in got.message, (name, got.message[:2000])
