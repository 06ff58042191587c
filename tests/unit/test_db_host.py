"""Host checks go only to the target's [host].spec: never to the assessor's machine.

The host controls run in a separate pytest process (as an assessor runs them) against a
target whose [host].spec is an SSH host that cannot be reached (a closed loopback port),
or that has no [host] section at all. Every host test must then fail naming the host, or
be not assessed saying there is no host: none may pass, and no test may be parametrized
by testinfra (no ``[local]`` in any test id).
"""

from __future__ import annotations

import sys

import pytest

from tests.control_runner import CONTROLS, ROOT, _parse_junit
from ztm.checks.host_spec import HostUnreachable, describe, open_host

# Every test that examines the database host, whatever else it needs: their first fixture
# that reaches the host is db_host (the admin path is never reached for these).
HOST_TESTS = [
    "test_hst_1_key_material.py",
    "test_hst_2_openscap.py",
    "test_net_1_firewall.py::test_input_policy_is_drop",
    "test_net_1_firewall.py::test_only_expected_ports_listen",
    "test_net_2_bruteforce.py::test_jail_watches_the_server_log",
    "test_cfg_1_server_variables.py::test_on_disk_configuration_hardened",
]
UNREACHABLE = "ssh://root@127.0.0.1:1?ssh_identity_file=/nonexistent/key&timeout=3"
ROLES = "".join(f'[roles.{r}]\nuser = "{r}"\npassword = {{env = "ZTM_UNIT_NO_SUCH_VAR"}}\n'
                for r in ("app", "auditor", "migration", "probe", "admin"))
TARGET = f'''
[target]
name = "unit"
engine = "mariadb"
host = "127.0.0.1"
port = 1
server_name = "db.unit"
database = "d"
[tls]
ca = "ca.pem"
{ROLES}
'''
HOST = '''
[host]
spec = "{spec}"
config_files = ["/etc/hostname"]
key_files = ["/etc/hostname"]
key_scan_dirs = ["/etc"]
[network]
listen_ports = [3306]
'''


def _run(pytester: pytest.Pytester, target: str) -> dict:
    (pytester.path / "target.toml").write_text(target)
    (pytester.path / "ca.pem").write_text("")
    junit = pytester.path / "junit.xml"
    done = pytester.run(sys.executable, "-m", "pytest", "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT),
                        *[str(CONTROLS / t) for t in HOST_TESTS], "--target", str(pytester.path / "target.toml"),
                        f"--junitxml={junit}", "-q", "-p", "no:randomly", timeout=120)
    tests = _parse_junit(junit) if junit.exists() else {}
    assert tests, done.stdout.str()[-2000:] + done.stderr.str()[-2000:]
    assert not [n for n in tests if "[" in n], f"parametrized host tests: {sorted(tests)}"
    return tests


def test_unreachable_ssh_host_fails_every_host_test_naming_the_host(pytester):
    tests = _run(pytester, TARGET + HOST.format(spec=UNREACHABLE))
    for name, got in tests.items():
        assert got.outcome in ("failed", "error", "skipped"), f"{name} {got.outcome} on an unreachable host"
        if got.outcome != "skipped":
            assert "could not reach the database host at ssh://root@127.0.0.1:1" in got.message, (name, got.message)
    reached = [n for n, t in tests.items() if t.outcome != "skipped"]
    assert len(reached) >= 8, f"expected every host test to try the host: {tests}"


def test_without_a_host_section_host_tests_are_not_assessed(pytester):
    tests = _run(pytester, TARGET)
    for name, got in tests.items():
        assert got.outcome == "skipped", f"{name} {got.outcome} without [host]: {got.message[:300]}"
    assert any("no [host] section" in t.message for t in tests.values())


def test_testinfra_plugin_is_blocked_by_its_registered_name(pytestconfig):
    # testinfra registers itself as 'pytest11.testinfra' (its entry point), not 'testinfra'.
    assert pytestconfig.pluginmanager.is_blocked("pytest11.testinfra")
    assert pytestconfig.pluginmanager.get_plugin("pytest11.testinfra") is None


def test_open_host_names_the_host_without_its_password():
    with pytest.raises(HostUnreachable, match=r"could not reach the database host at ssh://root@127\.0\.0\.1:1: "):
        open_host(UNREACHABLE)
    assert describe("ssh://root:s3cret@db1:2222?ssh_config=x") == "ssh://root@db1:2222"
    assert describe("local://") == "local://"
