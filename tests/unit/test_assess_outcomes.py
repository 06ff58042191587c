"""Assessing servers this project did not build: not-applicable outcomes, missing inputs and
driver errors reported as one sentence (issue 14)."""

from __future__ import annotations

import textwrap

import pymysql
import pytest

from evidence.oscal import finding_state
from evidence.results import TestResult, control_status
from ztm.plugin import driver_finding, inapplicable
from ztm.target import load_target

pytest_plugins = ["pytester"]


def _result(outcome: str, message: str = "") -> TestResult:
    return TestResult(nodeid=f"x::{outcome}", name=outcome, controls=["ZTM-CFG-1"], outcome=outcome, message=message)


def test_not_applicable_test_does_not_make_its_control_unsatisfied():
    results = [_result("passed"), _result("not-applicable", "not applicable: applies to mysql only")]
    assert control_status(results) == "passed"
    assert finding_state(results)[0] == "satisfied"


def test_a_failure_still_fails_beside_a_not_applicable_test():
    results = [_result("failed", "boom"), _result("not-applicable", "not applicable: mysql only")]
    assert control_status(results) == "failed"
    assert finding_state(results)[:2] == ("not-satisfied", "fail")


def test_only_not_applicable_tests_never_satisfy():
    results = [_result("not-applicable", "not applicable: mysql only")]
    assert control_status(results) == "not-applicable"
    state, _, remarks = finding_state(results)
    assert state == "not-satisfied" and "Not applicable" in remarks


def test_inapplicable_names_engine_and_version(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[target]\nname = "t"\nengine = "mariadb"\nhost = "127.0.0.1"\nport = 3306\ndatabase = "d"\n')
    t = load_target(f)
    assert inapplicable(t, "mysql", None, None) == "not applicable: applies to mysql only, the target is mariadb"
    assert inapplicable(t, ["mysql", "mariadb"], None, None) is None
    assert "10.11 and later" in inapplicable(t, None, "10.11", "10.6.2-MariaDB")
    assert inapplicable(t, None, "10.11", "10.11.6-MariaDB-0+deb12u1") is None


def test_driver_finding_is_one_sentence_naming_the_cause():
    exc = pymysql.err.OperationalError(2026, "SSL connection error: unexpected eof while reading")
    text = driver_finding(exc, "test_x")
    assert "\n" not in text and text.startswith("test_x: the TLS handshake failed") and "2026" in text


def test_missing_input_and_driver_errors_reach_the_report_as_one_line(pytester: pytest.Pytester, tmp_path):
    """Real pytest run through the ztm plugin: a missing role is a skip with its reason, an
    uncaught pymysql error a failure whose report holds no pymysql frame."""
    target = tmp_path / "target.toml"
    target.write_text('[target]\nname = "t"\nengine = "mariadb"\nhost = "127.0.0.1"\nport = 9\ndatabase = "d"\n')
    pytester.makepyfile(textwrap.dedent("""
        import pymysql, pytest

        def test_needs_app(target):
            target.role("app")

        @pytest.mark.needs("roles.probe", "tenants")
        def test_marked(target):
            raise AssertionError("must not run")

        @pytest.mark.applies(engine="mysql")
        def test_mysql_only(target):
            raise AssertionError("must not run")

        def test_driver(target):
            raise pymysql.err.ProgrammingError(1146, "Table 'd.records' doesn't exist")
    """))
    run = pytester.runpytest_subprocess("--target", str(target), "-rs", "-p", "no:randomly")
    out = run.stdout.str()
    run.assert_outcomes(skipped=3, failed=1)
    assert "no [roles.app]" in out and "no [roles.probe]" in out and "no [tenants]" in out
    assert "not applicable: applies to mysql only" in out
    assert "a table of the data plane does not exist" in out
    assert "pymysql/" not in out and "Traceback" not in out
