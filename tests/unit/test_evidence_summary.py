"""The control table at the end of a run and the ``--fail-on`` gate, through real pytest runs
of a tiny control suite (pytester), plain, quiet, under xdist and with a waiver."""

from __future__ import annotations

import pytest

from evidence.catalog import load_catalog
from evidence.results import TestResult
from evidence.summary import NOT_APPLICABLE, NOT_ASSESSED, NOT_SATISFIED, SATISFIED, WAIVED, control_verdicts

INI = "[pytest]\nmarkers =\n    control(id): catalog control id\n"
# ZTM-TLS-1 is high, ZTM-CFG-1 medium in controls/catalog.toml (asserted below, so a catalog change shows here).
MEDIUM_FAILS = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_tls():
    pass

@pytest.mark.control("ZTM-CFG-1")
def test_cfg():
    assert False, "local_infile=1\\nsecond line"
'''
HIGH_FAILS = MEDIUM_FAILS.replace("def test_tls():\n    pass", "def test_tls():\n    assert False, 'TLSv1.1 accepted'")


def test_catalog_severities_the_gate_tests_rely_on():
    catalog = load_catalog()
    assert catalog.get("ZTM-TLS-1").severity == "high" and catalog.get("ZTM-CFG-1").severity == "medium"


@pytest.fixture
def suite(pytester):
    pytester.makeini(INI)
    return pytester


@pytest.mark.parametrize(("gate", "code"), [("any", 1), ("low", 1), ("medium", 1), ("high", 0)])
def test_fail_on_medium_failure(suite, gate, code):
    suite.makepyfile(test_c=MEDIUM_FAILS)
    result = suite.runpytest("--fail-on", gate)
    assert result.ret == code, result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)


@pytest.mark.parametrize("gate", ["any", "medium", "high"])
def test_fail_on_high_failure_always_fails(suite, gate):
    suite.makepyfile(test_c=HIGH_FAILS)
    result = suite.runpytest("--fail-on", gate)
    assert result.ret == 1
    if gate != "any":
        result.stdout.fnmatch_lines([f"--fail-on {gate}: exit 1, failing at or above {gate}: ZTM-TLS-1*"])


def test_fail_on_never_excuses_a_failed_test_of_no_control(suite):
    suite.makepyfile(test_c=MEDIUM_FAILS + "\ndef test_plain():\n    assert False\n")
    result = suite.runpytest("--fail-on", "high")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*failing at or above high: *test_plain (no control)*"])


def test_fail_on_keeps_other_exit_codes(suite):
    suite.makepyfile(test_c="import pytest\n\n@pytest.mark.control('ZTM-CFG-1')\ndef test_x(:\n    pass\n")
    assert suite.runpytest("--fail-on", "high").ret == 2, "a collection error is not a control verdict"


def test_fail_on_bad_value_is_a_usage_error(suite):
    suite.makepyfile(test_c=MEDIUM_FAILS)
    result = suite.runpytest("--fail-on", "critical")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--fail-on: invalid choice: 'critical'*"])


def test_table_lists_controls_with_verdict_and_first_reason(suite):
    suite.makepyfile(test_c=MEDIUM_FAILS)
    result = suite.runpytest()
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*= ztm controls =*",
                                 "control *severity*title*verdict*tests",
                                 "ZTM-TLS-1 *high *Approved TLS versions*satisfied *1/1",
                                 "ZTM-CFG-1 *medium*not satisfied*0/1",
                                 "NOT SATISFIED ZTM-CFG-1 (medium): test_cfg: AssertionError: local_infile=1",
                                 "controls: 1 satisfied, 1 not satisfied, * not assessed"])
    table = out.split("ztm controls")[1].split("\ncontrols: ")[0]  # pytest's own -ra summary follows it
    assert "second line" not in table, "one line per reason"
    assert "ZTM-NET-1" in out, "every catalog control has a row"


def test_quiet_keeps_only_the_reasons(suite):
    suite.makepyfile(test_c=MEDIUM_FAILS)
    out = suite.runpytest("-q").stdout.str()
    assert "NOT SATISFIED ZTM-CFG-1" in out and "Approved TLS" not in out and "verdict" not in out
    assert "ztm controls" not in suite.runpytest("-qq").stdout.str()


def test_no_table_for_a_run_without_controls(suite):
    suite.makepyfile(test_c="def test_x():\n    pass\n")
    assert "ztm controls" not in suite.runpytest().stdout.str()


def test_control_option_limits_the_table(suite):
    suite.makepyfile(test_c=MEDIUM_FAILS)
    out = suite.runpytest("--control", "ZTM-TLS-1").stdout.str()
    assert "ZTM-TLS-1" in out and "ZTM-NET-1" not in out and "ZTM-CFG-1 " not in out


def test_table_under_xdist(suite):
    suite.makepyfile(test_c=MEDIUM_FAILS)
    result = suite.runpytest_subprocess("-n", "2", "--fail-on", "high")
    result.stdout.fnmatch_lines(["ZTM-TLS-1 *satisfied *1/1", "ZTM-CFG-1 *not satisfied*0/1",
                                 "NOT SATISFIED ZTM-CFG-1 (medium): test_cfg: AssertionError: local_infile=1"])
    assert result.ret == 0


def test_waived_control_never_fails_the_gate(suite):
    suite.makepyfile(test_c=HIGH_FAILS)
    suite.path.joinpath("waivers.toml").write_text(
        '[[waiver]]\ncontrol = "ZTM-TLS-1"\ntest = "test_tls"\njustification = "legacy client until migration"\n'
        'approver = "ciso"\nexpires = 2999-01-01\n')
    result = suite.runpytest("--waivers", "waivers.toml", "--fail-on", "high")
    result.stdout.fnmatch_lines(["ZTM-TLS-1 *waived *0/1"])
    assert result.ret == 0


def _r(name: str, outcome: str, controls: list[str], message: str = "") -> TestResult:
    return TestResult(name, name, controls, outcome=outcome, message=message)


def test_verdict_rules():
    catalog = load_catalog()
    verdicts = {v.id: v for v in control_verdicts(catalog, [
        _r("a", "passed", ["ZTM-TLS-1"]), _r("b", "skipped", ["ZTM-TLS-1"], "mysql only"),
        _r("c", "not-applicable", ["ZTM-TLS-2"], "no TCP listener"),
        _r("d", "passed", ["ZTM-TLS-3"]), _r("e", "not-applicable", ["ZTM-TLS-3"]),
        _r("f", "error", ["ZTM-CFG-1"], "error in setup: no server"), _r("g", "waived", ["ZTM-CFG-1"])])}
    assert verdicts["ZTM-TLS-1"].verdict == NOT_ASSESSED, "a skipped test: never satisfied on what was not seen"
    assert verdicts["ZTM-TLS-1"].reason == "b skipped: mysql only"
    assert verdicts["ZTM-TLS-2"].verdict == NOT_APPLICABLE
    assert verdicts["ZTM-TLS-3"].verdict == SATISFIED and verdicts["ZTM-TLS-3"].passed == 1
    assert verdicts["ZTM-CFG-1"].verdict == NOT_SATISFIED and "no server" in verdicts["ZTM-CFG-1"].reason
    assert verdicts["ZTM-NET-1"].verdict == NOT_ASSESSED and verdicts["ZTM-NET-1"].total == 0
    assert control_verdicts(catalog, [_r("g", "waived", ["ZTM-CFG-1"])], ["ZTM-CFG-1"])[0].verdict == WAIVED
