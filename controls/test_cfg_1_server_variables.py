"""ZTM-CFG-1: hardened server variables hold live, on disk, and (MySQL) in persisted variables.

Live values come from SHOW GLOBAL VARIABLES through the admin path; on-disk values from the
target's configuration files read through the testinfra host, following ``!include`` and
``!includedir`` as the server does (a drop-in file can undo the main file), so a setting
changed only at runtime, only on disk, or only by SET PERSIST is each caught.
"""

from __future__ import annotations

import pytest

from ztm.checks.variables import (
    ConfigRead,
    HostFiles,
    live_variables,
    mismatches,
    parse_persisted,
    read_config,
    server_sections,
)

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


def test_on_disk_configuration_hardened(target, db_host, evidence):
    files = target.section("host").get("config_files", [])
    if not files:
        pytest.skip("the target names no configuration files ([host].config_files)")
    read = ConfigRead()
    sections = server_sections(target.dialect, target.version)
    for path in files:
        resolved = str(target.resolve(path))
        assert db_host.file(resolved).exists, f"configuration file {path} does not exist on the host"
        read_config(HostFiles(db_host), resolved, sections, into=read)  # follows !include and !includedir
    evidence.json("on-disk-variables", {"files_read": read.files, "includes_not_found": read.missing,
                                        "options": read.options, "set_in": read.origin})
    problems = [problem + (f" (set in {read.origin[name]})" if name in read.origin else "")
                for name, want in _expected_on_disk(target).items()
                for problem in mismatches({name: want}, read.options)]
    for path_option in ("ssl_crl", "secure_file_priv"):
        if not read.options.get(path_option):
            problems.append(f"{path_option} is not set in the configuration")
    assert not problems, "configuration on disk not hardened (a restart would lose it): " + "; ".join(problems)


def test_persisted_variables_hardened(target, db_host, evidence):
    if not target.dialect.persisted_config_supported:
        pytest.skip(f"{target.engine} has no SET PERSIST: nothing overrides the configuration files at restart")
    path = target.section("host").get("persisted_config")
    if not path:
        pytest.skip("the target names no persisted-variables file ([host].persisted_config)")
    f = db_host.file(str(target.resolve(path)))
    if not f.exists:
        evidence.text("persisted-variables", "no persisted variables file: nothing persisted")
        return
    persisted = parse_persisted(f.content_string)
    evidence.json("persisted-variables", persisted)
    relevant = {k: v for k, v in _expected_on_disk(target).items() if k in persisted}
    problems = mismatches(relevant, persisted)
    assert not problems, "SET PERSIST overrides hardened settings at the next restart: " + "; ".join(problems)
