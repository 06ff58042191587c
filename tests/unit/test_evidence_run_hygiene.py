"""A bundle run is careful with what it writes: a bad --evidence-out stops it before any test,
failure reports carry no fixture values or locals, known secrets are redacted before signing,
and under xdist the target's identity still reaches run.json."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from evidence.scan import find_secrets
from evidence.verify import verify_bundle
from tests.unit.test_evidence_bundle import INI, make_key, public_of

MARKER_TEST = '''
import pathlib
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_ran():
    pathlib.Path("ran.marker").write_text("a test ran")
'''


@pytest.fixture
def key(tmp_path) -> str:
    return str(make_key(tmp_path / "signer.key"))


@pytest.mark.parametrize(("where", "expected"), [
    ("dir", "is a directory: name the bundle file"),
    ("missing/b.tar.gz", "does not exist"),
    ("file/b.tar.gz", "is not a folder"),
    ("/sys/ztm-bundle.tar.gz", "cannot write in /sys ("),  # EACCES, or EROFS where /sys is mounted read-only
    ("/dev/null", "exists and is not a regular file"),
])
def test_bad_evidence_out_is_one_line_usage_error_before_any_test(pytester, key, where, expected):
    pytester.makeini(INI)
    pytester.makepyfile(test_one=MARKER_TEST)
    (pytester.path / "dir").mkdir()
    (pytester.path / "file").write_text("a file, not a folder")
    result = pytester.runpytest_subprocess("--evidence-out", where, "--evidence-key", key)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: --evidence-out ") and expected in lines[0], lines
    assert not (pytester.path / "ran.marker").exists(), "no test may run before the destination is known good"
    assert not (pytester.path / "missing").exists(), "a missing folder is not created behind the user's back"
    assert Path("/dev/null").is_char_device()


# -- failure reports: no fixture values, no locals --------------------------------------------------

# Neither value is PEM nor known to the target, so the secret scan cannot catch them: only the scrubber can.
RAW_KEY = "mlkem768x25519-HYBRID-SECRET-KEY-MATERIAL-0123456789abcdef"
PII = "ALICE-SENTINEL-PII-7F3A"
LEAKY = f'''
import pytest

@pytest.fixture
def pq_private_key():
    return {RAW_KEY!r}

@pytest.fixture
def customer():
    return {{"name": {PII!r}}}

@pytest.mark.control("ZTM-CRY-2")
def test_unwrap(pq_private_key, customer):
    unwrapped = pq_private_key + customer["name"]
    leftover = len(unwrapped)
    assert leftover == 0, "the hybrid unwrap left key material behind"
'''
# A fake key; the PEM markers are split so that this file does not itself read as a key.
PQ_KEY = ("-----BEGIN PRIV" "ATE KEY-----\nMC4CAQAwBQYDK2VuBCIEIPQ-HYBRID-SECRET-KEY-MATERIAL-0123456789\n"
          "-----END PRIV" "ATE KEY-----")


def _members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name.removeprefix("bundle/"): tar.extractfile(m).read() for m in tar if m.isfile()}


def test_without_a_bundle_pytest_would_print_the_fixture_values(pytester):
    """The baseline the scrubber exists for: a long traceback with -l prints arguments and locals."""
    pytester.makeini(INI)
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-l", "--tb=long")
    assert result.ret == 1
    assert "HYBRID-SECRET-KEY-MATERIAL" in result.stdout.str() and PII in result.stdout.str()


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_failure_reports_of_a_bundle_run_carry_no_fixture_values_or_locals(pytester, tmp_path, key, xdist):
    pytester.makeini(INI)
    pytester.makepyfile(test_leaky=LEAKY)
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess(*xdist, "-l", "--tb=long", "--evidence-out", str(out), "--evidence-key", key)
    assert result.ret == 1, "the failure stays a failure"
    files = _members(out)
    for name in ("junit.xml", "report.html", "results.json", "oscal/assessment-results.json"):
        assert b"HYBRID-SECRET-KEY-MATERIAL" not in files[name] and PII.encode() not in files[name], name
    assert b"the hybrid unwrap left key material behind" in files["junit.xml"], "the reason is still reported"
    assert b"assert leftover == 0" in files["junit.xml"], "the failing source line is still shown"
    assert "HYBRID-SECRET-KEY-MATERIAL" not in result.stdout.str() and PII not in result.stdout.str()
    assert "redactions" not in json.loads(files["run.json"]), "nothing was left for the secret scan to catch"


# -- secrets the scan redacts before signing --------------------------------------------------------

TARGET = '''
[target]
name = "unit-target"
engine = "mariadb"
host = "192.0.2.10"
port = 3306
server_name = "db.example"
database = "securedb"
[tls]
ca = "ca.pem"
[roles.app]
user = "app"
password = {file = "app.password"}
[roles.auditor]
user = "auditor"
[roles.migration]
user = "migration"
[roles.probe]
user = "probe"
[roles.admin]
user = "root"
[kms]
provider = "pkcs11"
pin = {env = "ZTM_UNIT_KMS_PIN"}
'''
APP_PASSWORD = "Unit-App-Pw-5c1d9e0a"
KMS_PIN = "unit-kms-pin-31415926"
SENTINEL = "ZTM SENTINEL 0A1B2C3D4E5F"
PRINTS_SECRETS = f'''
import pytest
from ztm.keep_out import keep_out_of_bundle

@pytest.fixture
def sentinel(request):
    keep_out_of_bundle(request.config, {SENTINEL!r})
    return {SENTINEL!r}

@pytest.mark.control("ZTM-CRY-1")
def test_leaks(sentinel, evidence):
    evidence.text("dump", "row: " + sentinel + " pin " + {KMS_PIN!r})
    evidence.json("cfg", {{"password": {APP_PASSWORD!r}, "key": {PQ_KEY!r}}})
    assert sentinel not in "stored " + sentinel, "plaintext PII found: " + {APP_PASSWORD!r}
'''


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_known_secrets_are_redacted_before_signing_and_reported(pytester, tmp_path, key, xdist, monkeypatch):
    pytester.makeini(INI)
    pytester.makepyfile(test_leaks=PRINTS_SECRETS)
    (pytester.path / "target.toml").write_text(TARGET)
    (pytester.path / "app.password").write_text(APP_PASSWORD + "\n")
    monkeypatch.setenv("ZTM_UNIT_KMS_PIN", KMS_PIN)
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess(*xdist, "--target", "target.toml", "--evidence-out", str(out),
                                           "--evidence-key", key)
    assert result.ret == 1
    needles = [APP_PASSWORD, KMS_PIN, SENTINEL]
    assert find_secrets(out, needles) == [], "no password, PIN, PII sentinel or private key in the signed bundle"
    assert verify_bundle(out, pubkey=public_of(Path(key), tmp_path / "pub.pem")).ok
    files = _members(out)
    assert b"***REDACTED***" in files["evidence/ZTM-CRY-1/test_leaks/dump.txt"]
    cfg = json.loads(files["evidence/ZTM-CRY-1/test_leaks/cfg.json"])["data"]
    assert cfg == {"password": "***REDACTED***", "key": "***REDACTED PRIVATE KEY***"}
    assert b"plaintext PII found: ***REDACTED***" in files["junit.xml"]
    redactions = json.loads(files["run.json"])["redactions"]
    assert "evidence/ZTM-CRY-1/test_leaks/cfg.json: contains a PEM private key" in redactions
    assert "evidence/ZTM-CRY-1/test_leaks/dump.txt: contains a secret (plain)" in redactions
    assert not any(r.startswith("junit.xml") for r in redactions), f"masked where it was made: {redactions}"
    result.stdout.fnmatch_lines(["ztm evidence: redacted before signing: evidence/ZTM-CRY-1/test_leaks/dump.txt: "
                                 "contains a secret*"])
    for secret in needles:
        assert secret not in result.stdout.str() + result.stderr.str(), "the terminal never shows a secret"
    for secret in needles:
        assert secret not in json.dumps(redactions), "a finding names the file, never the value"


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_run_without_a_bundle_never_prints_a_secret(pytester, xdist, monkeypatch):
    """pytest's own failure output, its short summary and the control table all come from the report,
    which is masked where the test ran: no bundle is needed for the terminal to stay clean."""
    pytester.makeini(INI)
    pytester.makepyfile(test_leaks=PRINTS_SECRETS)
    (pytester.path / "target.toml").write_text(TARGET)
    (pytester.path / "app.password").write_text(APP_PASSWORD + "\n")
    monkeypatch.setenv("ZTM_UNIT_KMS_PIN", KMS_PIN)
    result = pytester.runpytest_subprocess(*xdist, "-ra", "--tb=long", "--target", "target.toml")
    assert result.ret == 1
    shown = result.stdout.str() + result.stderr.str()
    assert "plaintext PII found: ***REDACTED***" in shown, "the reason is still shown, the value masked"
    for secret in (APP_PASSWORD, SENTINEL):
        assert secret not in shown


def test_a_clean_run_redacts_nothing(pytester, tmp_path, key):
    pytester.makeini(INI)
    pytester.makepyfile(test_one=MARKER_TEST)
    (pytester.path / "target.toml").write_text(TARGET)
    (pytester.path / "app.password").write_text(APP_PASSWORD + "\n")
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess("--target", "target.toml", "--evidence-out", str(out),
                                           "--evidence-key", key)
    assert result.ret == 0
    assert "redactions" not in json.loads(_members(out)["run.json"])
    assert "redacted" not in result.stdout.str()


# -- xdist: the target identity still reaches run.json ----------------------------------------------

# Stands in for ztm.plugin's fixtures: `target` records the identity, `admin` adds the server's
# version, and only the test that needs the admin path uses it (so only one worker knows it).
IDENTITY_CONFTEST = '''
import pytest
from ztm.plugin import TARGET_INFO

@pytest.fixture(scope="session")
def target(pytestconfig):
    pytestconfig.stash[TARGET_INFO] = {"unit-lab": {"name": "unit-lab", "host": "10.77.0.2", "port": 3306,
                                                    "engine": "mariadb", "target_file": "lab/target.toml"}}

@pytest.fixture(scope="session")
def admin(target, pytestconfig):
    pytestconfig.stash[TARGET_INFO]["unit-lab"]["server_version"] = "10.11.19-MariaDB"
'''
IDENTITY_TESTS = '''
import pytest

@pytest.mark.control("ZTM-CFG-1")
def test_reads_variables(admin):
    pass

@pytest.mark.control("ZTM-TLS-1")
@pytest.mark.parametrize("n", range(6))
def test_probe(target, n):
    pass
'''


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_target_identity_and_server_version_reach_run_json(pytester, tmp_path, key, xdist):
    pytester.makeini(INI)
    pytester.makeconftest(IDENTITY_CONFTEST)
    pytester.makepyfile(test_identity=IDENTITY_TESTS)
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess(*xdist, "--evidence-out", str(out), "--evidence-key", key)
    assert result.ret == 0
    assert json.loads(_members(out)["run.json"])["target"] == {
        "name": "unit-lab", "host": "10.77.0.2", "port": 3306, "engine": "mariadb",
        "target_file": "lab/target.toml", "server_version": "10.11.19-MariaDB"}


def test_unwritable_destination_at_the_end_is_one_clear_line(pytester, tmp_path, key):
    """The folder disappears during the run: no traceback, the reason, and no bundle."""
    pytester.makeini(INI)
    gone = tmp_path / "gone"
    gone.mkdir()
    pytester.makepyfile(test_one=f'''
import os
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_removes_the_folder():
    os.rmdir({str(gone)!r})
''')
    result = pytester.runpytest_subprocess("--evidence-out", str(gone / "b.tar.gz"), "--evidence-key", key)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines([f"ztm evidence: no bundle written: cannot write the bundle to {gone}/b.tar.gz: "
                                 "No such file or directory"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not os.path.exists(gone)


def test_server_version_is_asked_at_the_end_when_no_test_used_the_admin_path(pytester, tmp_path, key):
    """Here the admin path leads nowhere: run.json says why the version is missing instead of guessing."""
    from tests.unit.test_target import MINIMAL

    target = tmp_path / "target.toml"
    target.write_text(MINIMAL.replace("/run/mysqld/mysqld.sock", str(tmp_path / "absent.sock")))
    pytester.makeini(INI)
    pytester.makeconftest(f'''
import pytest
from ztm.plugin import TARGET_INFO

@pytest.fixture(scope="session")
def target(pytestconfig):
    pytestconfig.stash[TARGET_INFO] = {{"vm1": {{"name": "vm1", "host": "192.0.2.10", "port": 3306,
                                                "engine": "mysql", "target_file": {str(target)!r}}}}}
''')
    pytester.makepyfile(test_tls='''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_probe(target):
    pass
''')
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess("--evidence-out", str(out), "--evidence-key", key)
    assert result.ret == 0
    identity = json.loads(_members(out)["run.json"])["target"]
    assert "server_version" not in identity and identity["name"] == "vm1"
    assert identity["note"].startswith("server version not read: Can't connect") and "No such file" in identity["note"]


def test_the_bundle_line_is_shown_when_pytest_prints_no_summary(pytester, tmp_path, key):
    """pytest skips the terminal summary when a plugin exits with a code of its own (here 7)."""
    pytester.makeini(INI)
    pytester.makepyfile(test_one='''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_first():
    pass

@pytest.mark.control("ZTM-TLS-1")
def test_stops_the_run():
    pytest.exit("a plugin gives up", returncode=7)
''')
    out = tmp_path / "b.tar.gz"
    result = pytester.runpytest_subprocess("--evidence-out", str(out), "--evidence-key", key)
    assert result.ret == 7, "pytest's exit code is unchanged"
    assert out.is_file()
    result.stdout.fnmatch_lines([f"ztm evidence: signed bundle {out} (*"])
    assert json.loads(_members(out)["run.json"])["exit_status"] == 7
