"""Control ids come from the catalog; --control selects; waivers; xdist builds one bundle."""

from __future__ import annotations

import json
import tarfile
from datetime import date, timedelta

import pytest

from tests.unit.test_evidence_bundle import INI, make_key

TWO_CONTROLS = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_tls(evidence):
    evidence.json("seen", {"worker": __import__("os").environ.get("PYTEST_XDIST_WORKER", "main")})

@pytest.mark.control("ZTM-NET-1")
def test_net():
    assert False, "input policy is accept"
'''


@pytest.fixture
def suite(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_controls=TWO_CONTROLS)
    return pytester


def results_of(bundle):
    with tarfile.open(bundle, "r:gz") as tar:
        return json.loads(tar.extractfile("bundle/results.json").read())


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_unknown_control_id_fails_collection(pytester, tmp_path, xdist):
    pytester.makeini(INI)
    pytester.makepyfile(test_typo='''
import pytest

pytestmark = pytest.mark.control("ZTM-TLS-9")

class TestTypo:
    def test_x(self):
        pass
''')
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess(*xdist, "--evidence-out", str(out), "--evidence-key",
                                           str(make_key(tmp_path / "k.key")))
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)
    result.stdout.fnmatch_lines(["*ERROR collecting*test_typo.py*",
                                 "unknown control id ZTM-TLS-9 (on *test_typo.py::TestTypo::test_x): every id "
                                 "must be defined in controls/catalog.toml"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    error = next(t for t in results_of(out)["tests"] if t["outcome"] == "error")
    assert "unknown control id ZTM-TLS-9" in error["message"], "the bundle records the collection error"


def test_control_option_selects_and_rejects_unknown_ids(suite):
    result = suite.runpytest_subprocess("--control", "ZTM-TLS-1", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    for xdist in ((), ("-n", "2")):
        bad = suite.runpytest_subprocess("--control", "ZTM-XYZ-1", *xdist)
        assert bad.ret == pytest.ExitCode.USAGE_ERROR
        bad.stderr.fnmatch_lines(["*--control ZTM-XYZ-1: not in controls/catalog.toml*"])


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_controls_list_shows_which_controls_have_tests(suite, xdist):
    result = suite.runpytest_subprocess("--controls-list", *xdist)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["ZTM-TLS-1*tests*high (CAT I)*Approved TLS versions*", "*NIST SC-8(1)*",
                                 "ZTM-AUD-2*NO TESTS*"])
    result.stdout.no_fnmatch_line("*passed*")
    result.stdout.no_fnmatch_line("*no tests ran*")
    result.stdout.fnmatch_lines(["*- test_*::test_*"])  # each control lists its tests
    assert "INTERNALERROR" not in result.stdout.str() and "Exit" not in result.stdout.str()


def write_waivers(path, expires, scope='test = "test_net"'):
    path.write_text(f'''
[[waiver]]
control = "ZTM-NET-1"
{scope}
justification = "Firewall change window CHG-1234 pending"
approver = "CISO office"
expires = {expires.isoformat()}
''')
    return path


def test_active_waiver_turns_a_failure_into_waived_everywhere(suite, tmp_path):
    waivers = write_waivers(tmp_path / "waivers.toml", date.today() + timedelta(days=30))
    out = tmp_path / "b.tar.gz"
    result = suite.runpytest_subprocess("--waivers", str(waivers), "--evidence-out", str(out),
                                        "--evidence-key", str(make_key(tmp_path / "k.key")), "-rx")
    assert result.ret == 0, "a waived failure does not fail the gate"
    result.stdout.fnmatch_lines(["*XFAIL*test_net*ZTM-NET-1 waived: Firewall change window CHG-1234*CISO office*"])
    result.stdout.fnmatch_lines(["*ztm waivers*", "WAIVED *test_controls.py::test_net: ZTM-NET-1 waived: *CHG-1234*"])
    results = results_of(out)
    net = next(t for t in results["tests"] if t["name"] == "test_net")
    assert net["outcome"] == "waived" and "CHG-1234" in net["waiver"] and "input policy is accept" in net["message"]
    assert {c["id"]: c["status"] for c in results["controls"]}["ZTM-NET-1"] == "waived"
    with tarfile.open(out, "r:gz") as tar:
        junit = tar.extractfile("bundle/junit.xml").read()
        ar = json.loads(tar.extractfile("bundle/oscal/assessment-results.json").read())
    assert b'name="waiver"' in junit
    with tarfile.open(out, "r:gz") as tar:
        html = tar.extractfile("bundle/report.html").read()
    assert b"WAIVED: ZTM-NET-1 waived: Firewall change window CHG-1234" in html
    finding = next(f for f in ar["assessment-results"]["results"][0]["findings"]
                   if f["target"]["target-id"] == "ztm-net-1")
    assert finding["target"]["status"]["state"] == "not-satisfied" and "CHG-1234" in finding["remarks"]


def test_expired_waiver_is_ignored_and_reported(suite, tmp_path):
    waivers = write_waivers(tmp_path / "waivers.toml", date.today() - timedelta(days=1))
    out = tmp_path / "b.tar.gz"
    result = suite.runpytest_subprocess("--waivers", str(waivers), "--evidence-out", str(out),
                                        "--evidence-key", str(make_key(tmp_path / "k.key")))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*waiver for ZTM-NET-1 expired on*ignored*"])
    results = results_of(out)
    assert results["waivers"]["expired_ignored"][0]["control"] == "ZTM-NET-1"
    assert next(t for t in results["tests"] if t["name"] == "test_net")["outcome"] == "failed"


def test_malformed_waiver_file_is_one_clear_error(suite, tmp_path):
    bad = tmp_path / "waivers.toml"
    bad.write_text('[[waiver]]\ncontrol = "ZTM-NET-1"\napprover = "x"\nexpires = 2027-01-01\n')
    result = suite.runpytest_subprocess("--waivers", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*waiver file*invalid at waivers/0*justification*"])


def test_xdist_builds_the_bundle_once_with_worker_evidence(suite, tmp_path):
    out = tmp_path / "b.tar.gz"
    result = suite.runpytest_subprocess("-n", "2", "--evidence-out", str(out), "--evidence-key",
                                        str(make_key(tmp_path / "k.key")))
    assert result.ret == 1
    assert len([line for line in result.outlines if "ztm evidence: signed bundle" in line]) == 1
    with tarfile.open(out, "r:gz") as tar:
        seen = json.loads(tar.extractfile("bundle/evidence/ZTM-TLS-1/test_tls/seen.json").read())
    assert seen["data"]["worker"].startswith("gw"), "the evidence was recorded on a worker and reached the bundle"
    assert {t["name"] for t in results_of(out)["tests"]} == {"test_tls", "test_net"}


def test_json_waiver_file_is_accepted(suite, tmp_path):
    waivers = tmp_path / "waivers.json"
    waivers.write_text(json.dumps({"waivers": [{
        "control": "ZTM-NET-1", "finding": "input policy is accept",
        "justification": "Firewall change window CHG-1234 pending", "approver": "CISO office",
        "expires": (date.today() + timedelta(days=3)).isoformat()}]}))
    result = suite.runpytest_subprocess("--waivers", str(waivers))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["WAIVED *test_controls.py::test_net: *"])


WAIVED_CONTROL_SUITE = '''
import pytest

@pytest.mark.control("ZTM-NET-1")
def test_net():
    assert False, "input policy is accept"

@pytest.mark.control("ZTM-NET-1")
def test_intruder():
    assert False, "the intruder reached 3306"

@pytest.mark.control("ZTM-NET-1")
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_family(family):
    assert False, f"{family}: port 22 open to the world" if family == "v4" else f"{family}: port 3306 open"
'''


@pytest.mark.parametrize(("scope", "waived", "failed"), [
    ('test = "test_net"', {"test_net"}, {"test_intruder", "test_family[v4]", "test_family[v6]"}),
    ('finding = "port 22 open"', {"test_family[v4]"}, {"test_net", "test_intruder", "test_family[v6]"}),
    ('test = "test_family[v6]"', {"test_family[v6]"}, {"test_net", "test_intruder", "test_family[v4]"}),
    ('test = "test_net"\nfinding = "policy is drop"', set(), {"test_net", "test_intruder", "test_family[v4]",
                                                             "test_family[v6]"}),
], ids=["test", "finding", "one-parameter", "test-with-another-finding"])
def test_a_waiver_covers_exactly_its_test_or_finding(pytester, tmp_path, scope, waived, failed):
    """A new failure of a waived control (another test, another parameter, another finding) still fails."""
    pytester.makeini(INI)
    pytester.makepyfile(test_net_suite=WAIVED_CONTROL_SUITE)
    waivers = write_waivers(tmp_path / "waivers.toml", date.today() + timedelta(days=3), scope)
    result = pytester.runpytest_subprocess("--waivers", str(waivers), "-rxf")
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK)
    out = result.stdout.str()
    for name in waived:
        assert f"test_net_suite.py::{name}: ZTM-NET-1 waived" in out
    for name in failed:
        assert f"FAILED test_net_suite.py::{name}" in out
    result.assert_outcomes(failed=len(failed), xfailed=len(waived))


def test_a_waiver_without_test_or_finding_is_refused(suite, tmp_path):
    waivers = write_waivers(tmp_path / "waivers.toml", date.today() + timedelta(days=3), "")
    result = suite.runpytest_subprocess("--waivers", str(waivers))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*waiver file*waivers/0*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_waiver_for_an_unknown_control_is_refused(suite, tmp_path):
    waivers = write_waivers(tmp_path / "waivers.toml", date.today() + timedelta(days=3))
    waivers.write_text(waivers.read_text().replace("ZTM-NET-1", "ZTM-NET-9"))
    result = suite.runpytest_subprocess("--waivers", str(waivers))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ZTM-NET-9*not in controls/catalog.toml*"])


def test_evidence_fixture_works_without_a_bundle_and_writes_nothing(suite, tmp_path):
    before = set(suite.path.rglob("*"))
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    written = {f for f in set(suite.path.rglob("*")) - before if f.suffix in (".gz", ".html", ".xml", ".json", ".txt")}
    assert written == set(), "no file is written without --evidence-out"
    result.stdout.fnmatch_lines(["ztm: catalog controls without tests in this run: ZTM-TLS-2, *"])


def test_uncovered_controls_are_reported_under_xdist_too(suite, tmp_path):
    result = suite.runpytest_subprocess("-n", "2")
    result.stdout.fnmatch_lines(["ztm: catalog controls without tests in this run: ZTM-TLS-2, *"])
    assert "ZTM-TLS-1," not in result.stdout.str().split("without tests in this run:")[1].splitlines()[0]


def test_controls_list_or_collect_only_write_no_bundle(suite, tmp_path):
    key = str(make_key(tmp_path / "k.key"))
    for option in ("--controls-list", "--collect-only"):
        out = tmp_path / f"{option.strip('-')}.tar.gz"
        result = suite.runpytest_subprocess(option, "--evidence-out", str(out), "--evidence-key", key)
        assert result.ret == 0 and not out.exists(), option


def test_catalog_json_marks_controls_with_tests(suite, tmp_path):
    out = tmp_path / "b.tar.gz"
    suite.runpytest_subprocess("--control", "ZTM-TLS-1", "--evidence-out", str(out),
                               "--evidence-key", str(make_key(tmp_path / "k.key")))
    with tarfile.open(out, "r:gz") as tar:
        catalog = json.loads(tar.extractfile("bundle/catalog.json").read())
    has = {c["id"]: c["has_tests"] for c in catalog["controls"]}
    assert has["ZTM-TLS-1"] and has["ZTM-NET-1"], "a control deselected by --control still has tests"
    assert not has["ZTM-AUD-2"]
    assert [t["nodeid"].split("/")[-1] for t in results_of(out)["tests"]] == ["test_controls.py::test_tls"]
