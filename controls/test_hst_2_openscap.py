"""ZTM-HST-2 (optional): an OpenSCAP scan of the database host, with parsed ARF results.

Runs ``oscap xccdf eval`` with the SCAP Security Guide content that matches the host's OS
(or the target's [host].oscap_content) and records every rule result from the ARF file.
When no content matches the OS the control is skipped and says so. FIPS mode, AppArmor
and SELinux state are recorded as information, whatever the outcome.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ztm.checks import oscap

pytestmark = pytest.mark.control("ZTM-HST-2")


def _os_release(host) -> dict[str, str]:
    text = host.file("/etc/os-release").content_string if host.file("/etc/os-release").exists else ""
    return {k: v.strip('"') for k, _, v in (line.partition("=") for line in text.splitlines()) if k}


def test_platform_security_state_is_recorded(host, evidence):
    def read(path: str) -> str | None:
        f = host.file(path)
        return f.content_string.strip() if f.exists else None

    state = {"fips_enabled": read("/proc/sys/crypto/fips_enabled"),
             "apparmor_enabled": read("/sys/module/apparmor/parameters/enabled"),
             "selinux_enforce": read("/sys/fs/selinux/enforce"), "os": _os_release(host).get("PRETTY_NAME")}
    evidence.json("platform-security", state)
    assert state["os"], "cannot read /etc/os-release on the host"


def test_openscap_scan_has_no_failed_rules(host, target, evidence, tmp_path):
    facts = target.section("host")
    if not host.exists("oscap"):
        pytest.skip("OpenSCAP (oscap) is not installed on the host: install openscap-scanner to run ZTM-HST-2")
    release = _os_release(host)
    content = Path(facts["oscap_content"]) if facts.get("oscap_content") else oscap.content_for(
        release.get("ID", ""), release.get("VERSION_ID", ""))
    if content is None:
        pytest.skip(f"no SCAP Security Guide content matches {release.get('PRETTY_NAME', 'this OS')} "
                    f"(installed content: {', '.join(oscap.available_contents()) or 'none'}); "
                    "name one in [host].oscap_content to scan anyway")
    outcome = oscap.evaluate(content, tmp_path / "arf.xml", profile=facts.get("oscap_profile"),
                             rules=facts.get("oscap_rules"))
    evidence.json("oscap-results", {"content": outcome.content, "profile": outcome.profile,
                                    "exit_code": outcome.exit_code, "score": outcome.score,
                                    "counts": outcome.counts, "rules": outcome.rules})
    assert outcome.exit_code in (oscap.OK, oscap.FAILED_RULES), f"oscap could not run: {outcome.stderr}"
    assert outcome.rules, "the ARF results hold no rule results"
    assert not outcome.failed, f"{len(outcome.failed)} SCAP rule(s) failed: {', '.join(outcome.failed[:20])}"
