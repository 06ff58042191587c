"""The OpenSCAP wrapper and ARF parser against real oscap runs on this machine, through a
real testinfra local host (the same path the control takes to a VM over SSH).

The failing path uses a small hand-made data stream (tests/unit/vectors/oscap-key-file-ds.xml)
whose rule fails when a key file is readable beyond its owner: the same file fails at 0644
and passes at 0600, so the failure is the rule's and not the scanner's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import testinfra

from ztm.checks import oscap

VECTOR = Path(__file__).parent / "vectors" / "oscap-key-file-ds.xml"
KEY_RULE = "xccdf_org.ztm_rule_key_file_private"
UNIX_RULE = "xccdf_org.ztm_rule_unix_host"
SSG_DEBIAN11 = Path(oscap.SSG_DIR) / "ssg-debian11-ds.xml"

needs_oscap = pytest.mark.skipif(shutil.which("oscap") is None,
                                 reason="openscap-scanner is not installed (tasks.py installs it)")


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host("local://")


def _data_stream(tmp_path: Path, key_mode: int) -> tuple[Path, Path]:
    key = tmp_path / "server.key"
    key.write_text("not a real key\n")
    key.chmod(key_mode)
    ds = tmp_path / "ds.xml"
    ds.write_text(VECTOR.read_text().replace("@KEY_FILE@", str(key)))
    return ds, key


@needs_oscap
def test_failing_rule_is_read_from_the_real_arf(host, tmp_path):
    ds, _ = _data_stream(tmp_path, 0o644)
    outcome = oscap.evaluate(host, str(ds))
    assert outcome.exit_code == oscap.FAILED_RULES, outcome.stderr  # 2: rules failed, a normal result
    assert outcome.failed == [KEY_RULE]
    assert outcome.rules[KEY_RULE] == {"result": "fail", "severity": "high",
                                       "title": "Key file readable by its owner only"}
    assert outcome.rules[UNIX_RULE]["result"] == "pass"
    assert outcome.counts == {"fail": 1, "pass": 1} and outcome.applicable
    assert outcome.score is not None and outcome.score < 100


@needs_oscap
def test_same_rule_passes_once_the_key_file_is_private(host, tmp_path):
    ds, _ = _data_stream(tmp_path, 0o600)
    outcome = oscap.evaluate(host, str(ds), profile="xccdf_org.ztm_profile_key_file")
    assert outcome.exit_code == oscap.OK, outcome.stderr
    assert outcome.failed == [] and outcome.counts == {"pass": 2}


@needs_oscap
def test_rule_selection_and_leftover_temporary_files(host, tmp_path):
    ds, _ = _data_stream(tmp_path, 0o644)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outcome = oscap.evaluate(host, str(ds), rules=[UNIX_RULE], tmp_root=str(scratch))
    assert outcome.exit_code == oscap.OK and set(outcome.rules) == {UNIX_RULE}  # the failing rule not selected
    assert list(scratch.iterdir()) == []  # the ARF folder on the host is removed


@needs_oscap
def test_broken_content_is_an_error_not_a_result(host, tmp_path):
    broken = tmp_path / "broken-ds.xml"
    broken.write_text("<not-scap/>")
    outcome = oscap.evaluate(host, str(broken))
    assert outcome.exit_code == oscap.ERROR and outcome.rules == {} and outcome.stderr


@needs_oscap
@pytest.mark.skipif(not SSG_DEBIAN11.exists(), reason="ssg-debian is not installed (tasks.py installs it)")
def test_content_for_another_os_is_not_applicable(host):
    rule = "xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd"
    release = oscap.os_release(host)
    if release.get("ID") == "debian" and release.get("VERSION_ID") == "11":
        pytest.skip("this machine is Debian 11: the Debian 11 content applies here")
    outcome = oscap.evaluate(host, str(SSG_DEBIAN11), rules=[rule])
    assert outcome.exit_code == oscap.OK, outcome.stderr
    assert outcome.rules[rule]["result"] == "notapplicable" and not outcome.applicable


def test_content_lookup_follows_the_os():
    contents = {"debian11": "/c/ssg-debian11-ds.xml", "ubuntu2204": "/c/ssg-ubuntu2204-ds.xml",
                "rhel9": "/c/ssg-rhel9-ds.xml", "fedora": "/c/ssg-fedora-ds.xml"}
    assert oscap.content_for({"ID": "debian", "VERSION_ID": "11"}, contents) == contents["debian11"]
    assert oscap.content_for({"ID": "debian", "VERSION_ID": "12"}, contents) is None  # ssg-debian has no 12
    assert oscap.content_for({"ID": "ubuntu", "VERSION_ID": "22.04"}, contents) == contents["ubuntu2204"]
    assert oscap.content_for({"ID": "rhel", "VERSION_ID": "9.4"}, contents) == contents["rhel9"]
    assert oscap.content_for({"ID": "fedora", "VERSION_ID": "40"}, contents) == contents["fedora"]
    assert oscap.content_for({}, contents) is None


def test_installed_contents_are_listed_on_the_host(host, tmp_path):
    (tmp_path / "ssg-debian12-ds.xml").write_text("<x/>")
    (tmp_path / "ssg-debian12-xccdf.xml").write_text("<x/>")
    assert oscap.installed_contents(host, (str(tmp_path),)) == {"debian12": f"{tmp_path}/ssg-debian12-ds.xml"}
    assert oscap.installed_contents(host, (str(tmp_path / "absent"),)) == {}


def test_installed_contents_looks_in_every_content_folder_later_wins(host, tmp_path):
    shipped, local = tmp_path / "share", tmp_path / "local"
    for folder in (shipped, local):
        folder.mkdir()
    (shipped / "ssg-debian11-ds.xml").write_text("")
    (shipped / "ssg-debian12-ds.xml").write_text("")
    (local / "ssg-debian12-ds.xml").write_text("")
    (local / "ssg-debian12-xccdf.xml").write_text("")  # not a data stream
    found = oscap.installed_contents(host, (str(shipped), str(local), str(tmp_path / "absent")))
    assert found == {"debian11": f"{shipped}/ssg-debian11-ds.xml", "debian12": f"{local}/ssg-debian12-ds.xml"}
    assert oscap.content_for({"ID": "debian", "VERSION_ID": "12"}, found) == found["debian12"]
    assert oscap.content_for({"ID": "plan9", "VERSION_ID": "4"}, found) is None


TAILORING = """<?xml version="1.0" encoding="UTF-8"?>
<xccdf:Tailoring xmlns:xccdf="http://checklists.nist.gov/xccdf/1.2" id="xccdf_unit.ztm_tailoring_t">
  <xccdf:version time="2026-01-01T00:00:00">1</xccdf:version>
  <xccdf:Profile id="xccdf_unit.ztm_profile_unix_only" extends="xccdf_org.ztm_profile_key_file">
    <xccdf:title>key-file profile without the key rule</xccdf:title>
    <xccdf:select idref="xccdf_org.ztm_rule_key_file_private" selected="false"/>
  </xccdf:Profile>
</xccdf:Tailoring>
"""


@needs_oscap
def test_tailoring_and_severities_decide_what_fails_and_the_arf_is_kept(host, tmp_path):
    ds, _ = _data_stream(tmp_path, 0o644)
    outcome = oscap.evaluate(host, str(ds), profile="xccdf_org.ztm_profile_key_file", keep_arf=True)
    assert outcome.failed_with(("high",)) == [KEY_RULE] and outcome.failed_with(("medium", "low")) == []
    assert outcome.arf and oscap.parse_arf(outcome.arf)[0] == outcome.rules
    tailoring = tmp_path / "tailoring.xml"
    tailoring.write_text(TAILORING)
    tailored = oscap.evaluate(host, str(ds), profile="xccdf_unit.ztm_profile_unix_only", tailoring=str(tailoring))
    assert tailored.exit_code == oscap.OK, tailored.stderr
    assert set(tailored.rules) == {UNIX_RULE} and tailored.failed == [] and tailored.arf is None
    assert tailored.evidence()["tailoring"] == str(tailoring)
