"""ZTM-CFG-1: hardened server variables hold live, on disk, and (MySQL) in persisted variables.

Live values come from SHOW GLOBAL VARIABLES through the admin path; on-disk values from the
target's configuration files read through the testinfra host, so a setting changed only at
runtime, only on disk, or only by SET PERSIST is each caught.
"""

from __future__ import annotations

import pytest

from ztm.checks.variables import live_variables, mismatches, parse_mycnf, parse_persisted

pytestmark = pytest.mark.control("ZTM-CFG-1")


def _expected_on_disk(target) -> dict[str, str]:
    settings = target.dialect.server_settings(crl="", secure_file_priv="")
    return {k: v for k, v in settings.items() if v}  # paths are checked for presence, not value


def test_live_variables_hardened(target, admin, evidence):
    expected = target.dialect.expected_live_variables(crl_basename=None)
    live = live_variables(admin, [*expected, "ssl_crl", "secure_file_priv"])
    evidence.json("live-variables", live)
    problems = mismatches(expected, live)
    if not live.get("ssl_crl"):
        problems.append("ssl_crl is empty (revoked client certificates would be accepted)")
    if live.get("secure_file_priv") == "":
        problems.append("secure_file_priv is empty (file import/export allowed anywhere)")
    assert not problems, "live server variables not hardened: " + "; ".join(problems)


def test_on_disk_configuration_hardened(target, host, evidence):
    files = target.section("host").get("config_files", [])
    if not files:
        pytest.skip("the target names no configuration files ([host].config_files)")
    merged: dict[str, str] = {}
    for path in files:
        f = host.file(str(target.resolve(path)))
        assert f.exists, f"configuration file {path} does not exist on the host"
        merged.update(parse_mycnf(f.content_string))
    evidence.json("on-disk-variables", merged)
    problems = mismatches(_expected_on_disk(target), merged)
    for path_option in ("ssl_crl", "secure_file_priv"):
        if not merged.get(path_option):
            problems.append(f"{path_option} is not set in the configuration")
    assert not problems, "configuration on disk not hardened (a restart would lose it): " + "; ".join(problems)


def test_persisted_variables_hardened(target, host, evidence):
    if not target.dialect.persisted_config_supported:
        pytest.skip(f"{target.engine} has no SET PERSIST: nothing overrides the configuration files at restart")
    path = target.section("host").get("persisted_config")
    if not path:
        pytest.skip("the target names no persisted-variables file ([host].persisted_config)")
    f = host.file(str(target.resolve(path)))
    if not f.exists:
        evidence.text("persisted-variables", "no persisted variables file: nothing persisted")
        return
    persisted = parse_persisted(f.content_string)
    evidence.json("persisted-variables", persisted)
    relevant = {k: v for k, v in _expected_on_disk(target).items() if k in persisted}
    problems = mismatches(relevant, persisted)
    assert not problems, "SET PERSIST overrides hardened settings at the next restart: " + "; ".join(problems)
