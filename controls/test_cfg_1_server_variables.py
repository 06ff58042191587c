"""ZTM-CFG-1: hardened server variables hold live, on disk, and (MySQL) in persisted variables.

The hardened values, and the TLS versions and suites, come from the policy (variables and
tls sections); path variables it names (ssl_crl, secure_file_priv) must be set.

Live values come from SHOW GLOBAL VARIABLES through the admin path; on-disk values from the
target's configuration files read through the testinfra host, following ``!include`` and
``!includedir`` as the server does (a drop-in file can undo the main file), so a setting
changed only at runtime, only on disk, or only by SET PERSIST is each caught.
"""

from __future__ import annotations

import pytest

from ztm.resources.host import server_command_lines
from ztm.resources.variables import (
    ConfigRead,
    HostFiles,
    command_line_options,
    live_variables,
    mismatches,
    parse_persisted,
    read_config,
    server_sections,
)

pytestmark = pytest.mark.control("ZTM-CFG-1")


# Why an empty path variable matters, for the message.
EMPTY_MEANS = {"ssl_crl": "revoked client certificates would be accepted",
               "secure_file_priv": "file import/export allowed anywhere"}
# NULL here switches the feature off altogether, which is stricter than any path.
OFF_WHEN_NULL = {"secure_file_priv"}


@pytest.mark.needs("roles.admin")
def test_live_variables_hardened(target, policy, admin, evidence):
    expected = target.dialect.expected_live_variables(policy)
    nonempty = policy.variables["nonempty"]
    live = live_variables(admin, [*expected, *nonempty])
    evidence.json("live-variables", live)
    problems = mismatches(expected, live)
    problems += [f"{name} is empty ({EMPTY_MEANS.get(name, 'the policy requires it set')})"
                 for name in nonempty if not live.get(name) and not (live.get(name) is None and name in OFF_WHEN_NULL)]
    assert not problems, f"live server variables not hardened (policy {policy.name}): " + "; ".join(problems)


def test_on_disk_configuration_hardened(target, policy, db_host, evidence):
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
                for name, want in target.dialect.expected_live_variables(policy).items()
                for problem in mismatches({name: want}, read.options)]
    problems += [f"{name} is not set in the configuration" for name in policy.variables["nonempty"]
                 if not read.options.get(name)]
    assert not problems, "configuration on disk not hardened (a restart would lose it): " + "; ".join(problems)


@pytest.mark.applies(engine="mysql")  # SET PERSIST and mysqld-auto.cnf are MySQL's alone
def test_persisted_variables_hardened(target, policy, db_host, evidence):
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
    relevant = {k: v for k, v in target.dialect.expected_live_variables(policy).items() if k in persisted}
    problems = mismatches(relevant, persisted)
    assert not problems, "SET PERSIST overrides hardened settings at the next restart: " + "; ".join(problems)


def test_forbidden_options_are_off(target, policy, db_host, evidence):
    """Options the policy forbids (zero-trust: sysdate_is_now, which would let a client's SET
    timestamp move the trail's event times) are on neither the configuration files nor the
    running server's command line."""
    forbidden = policy.variables["forbidden_options"]
    files = [str(target.resolve(p)) for p in target.section("host").get("config_files", [])]
    read = ConfigRead()
    for path in files:
        read_config(HostFiles(db_host), path, server_sections(target.dialect, target.version), into=read)
    commands = server_command_lines(db_host, files)
    on_command_line = [command_line_options(line) for line in commands]
    evidence.json("forbidden-options", {"forbidden": forbidden, "files_read": read.files,
                                        "server_command_lines": commands})
    assert commands, ("no database server process (mysqld, mariadbd) is visible on the database host: its "
                      "command line cannot be checked")
    problems = [f"{name} is on in the configuration ({read.origin.get(name)})" for name in forbidden
                if name in read.options and read.options[name].upper() not in ("0", "OFF", "FALSE")]
    problems += [f"{name} is on the server's command line" for name in forbidden for options in on_command_line
                 if name in options and options[name].upper() not in ("0", "OFF", "FALSE")]
    assert not problems, f"options the policy {policy.name} forbids are set: " + "; ".join(problems)
