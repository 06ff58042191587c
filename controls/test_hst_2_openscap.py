"""ZTM-HST-2: an OpenSCAP scan of the database host, with parsed ARF results.

``oscap xccdf eval`` runs on the database host through testinfra (over SSH in the lab and on
a VM), with the SCAP Security Guide data stream installed there that matches the host's OS
(or the target's [host].oscap_content). The profile is [host].oscap_profile (default
``standard``), optionally tailored by an XCCDF tailoring file on the host
([host].oscap_tailoring); failing rules of the severities in [host].oscap_fail_severities
(default all) fail the control. Every rule result and the ARF itself go into the evidence.
When no content on the host applies to its OS the control is not assessed and says so.
FIPS mode, AppArmor and SELinux state are recorded as information, whatever the outcome.
"""

from __future__ import annotations

import pytest

from ztm.checks import oscap

pytestmark = pytest.mark.control("ZTM-HST-2")


def test_platform_security_state_is_recorded(db_host, evidence):
    def read(path: str) -> str | None:
        f = db_host.file(path)
        return f.content_string.strip() if f.exists else None

    state = {"fips_enabled": read("/proc/sys/crypto/fips_enabled"),
             "apparmor_enabled": read("/sys/module/apparmor/parameters/enabled"),
             "selinux_enforce": read("/sys/fs/selinux/enforce"), "os": oscap.os_release(db_host).get("PRETTY_NAME")}
    evidence.json("platform-security", state)
    assert state["os"], "cannot read /etc/os-release on the database host"


def test_openscap_scan_has_no_failed_rules(db_host, target, evidence):
    facts = target.section("host")
    if not db_host.exists("oscap"):
        pytest.skip("not assessed: OpenSCAP (oscap) is not installed on the database host: install "
                    "openscap-scanner there")
    release = oscap.os_release(db_host)
    system = release.get("PRETTY_NAME", "this OS")
    installed = oscap.installed_contents(db_host)
    content = facts.get("oscap_content") or oscap.content_for(release, installed)
    if content is None:
        pytest.skip(f"not assessed: no SCAP Security Guide content for {system} is installed on the database host "
                    f"(it has: {', '.join(sorted(installed)) or 'none'}), so there is no benchmark to scan it "
                    "against; install content for this OS ('ztm provision scap'), or name a data stream in "
                    "[host].oscap_content")
    assert db_host.file(content).exists, f"the SCAP content {content} named by the target is not on the database host"
    tailoring = facts.get("oscap_tailoring")
    if tailoring:
        assert db_host.file(tailoring).exists, f"the tailoring file {tailoring} is not on the database host"
    severities = tuple(facts.get("oscap_fail_severities", oscap.SEVERITIES))
    outcome = oscap.evaluate(db_host, content, profile=facts.get("oscap_profile", oscap.DEFAULT_PROFILE),
                             rules=facts.get("oscap_rules"), tailoring=tailoring, keep_arf=True)
    evidence.json("oscap-results", {**outcome.evidence(), "fail_severities": list(severities)})
    if outcome.arf:
        evidence.text("oscap-arf", outcome.arf.decode("utf-8", errors="replace"))
    assert outcome.exit_code in (oscap.OK, oscap.FAILED_RULES), f"oscap could not run on the host: {outcome.stderr}"
    assert outcome.rules, "oscap ran but its ARF results hold no rule results"
    if not outcome.applicable:
        pytest.skip(f"not assessed: the SCAP content {content} does not apply to {system}: none of its "
                    f"{len(outcome.rules)} rule(s) could be checked ({outcome.counts})")
    failed = [f"{rule} ({outcome.rules[rule]['title']}, severity {outcome.rules[rule]['severity']})"
              for rule in outcome.failed_with(severities)]
    assert not failed, (f"{len(failed)} SCAP rule(s) of severity {'/'.join(severities)} failed on the database host "
                        f"(profile {outcome.profile}{', tailored by ' + tailoring if tailoring else ''}): "
                        f"{'; '.join(failed[:20])}")
