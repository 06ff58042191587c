"""The OpenSCAP wrapper and ARF parser against a real oscap run (one rule, about a second)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ztm.checks import oscap

CONTENT = Path("/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml")
RULE = "xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd"


@pytest.mark.skipif(shutil.which("oscap") is None or not CONTENT.exists(),
                    reason="openscap-scanner and ssg-debian are not installed (tasks.py installs them)")
def test_real_scan_is_parsed_into_rule_results(tmp_path):
    outcome = oscap.evaluate(CONTENT, tmp_path / "arf.xml", rules=[RULE])
    assert outcome.exit_code in (oscap.OK, oscap.FAILED_RULES), outcome.stderr
    assert outcome.rules == {RULE: "notapplicable"}  # Debian 11 content on a Debian 12 host
    assert outcome.counts == {"notapplicable": 1} and outcome.failed == []


def test_content_lookup_follows_the_os(tmp_path):
    (tmp_path / "ssg-debian12-ds.xml").write_text("<x/>")
    assert oscap.content_for("debian", "12", tmp_path) == tmp_path / "ssg-debian12-ds.xml"
    assert oscap.content_for("debian", "13", tmp_path) is None
    assert oscap.available_contents(tmp_path) == ["debian12"]
