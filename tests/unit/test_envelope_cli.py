"""`ztm envelope` through the installed console script, in subprocesses, against a real
SoftHSM2 token (no database needed): a good call prints the API document; each mistake a
user can make is one line on stderr, a non-zero exit, no traceback, and never the PIN."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ZTM = Path(sys.executable).parent / "ztm"
PIN = "cli-test-user-pin"
TENANT = str(uuid.UUID(int=0xA11CE))
PII = json.dumps({"name": "Cli Person", "email": "cli@example.invalid", "phone": "+15550101010"})

TARGET = """
[target]
name = "cli-test"
engine = "mariadb"
host = "127.0.0.1"
port = 3306
server_name = "db.example"
database = "securedb"

[tls]
ca = "ca.pem"

[roles.app]
user = "app_user"
[roles.auditor]
user = "auditor"
[roles.migration]
user = "migration"
[roles.probe]
user = "ztm_probe"
[roles.admin]
user = "root"
"""


@pytest.fixture(scope="module")
def token(tmp_path_factory) -> Path:
    """A SoftHSM2 token made by the lab's own set-up code, in a separate process (a process
    binds the PKCS#11 module to one configuration for its lifetime)."""
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 is not installed (tasks.py installs it)")
    root = tmp_path_factory.mktemp("cli-hsm")
    (root / "pin").write_text(PIN + "\n")
    (root / "pin").chmod(0o600)
    (root / "so-pin").write_text("cli-test-so-pin\n")  # PINs reach the child in files, never in its argv
    (root / "so-pin").chmod(0o600)
    code = ("import sys; from pathlib import Path; from provision import kms; "
            "layout = kms.KmsLayout(Path(sys.argv[1])); pin = Path(sys.argv[2]).read_text().strip(); "
            "kms.ensure_token(layout, pin, Path(sys.argv[3]).read_text().strip()); kms.ensure_keys(layout, pin)")
    subprocess.run([sys.executable, "-c", code, str(root / "kms"), str(root / "pin"), str(root / "so-pin")],
                   check=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    return root


def target_file(root: Path, name: str, kms: dict | None = None, crypto: str | None = None) -> Path:
    from provision import kms as lab_kms

    section = {"provider": "pkcs11", "module": lab_kms.MODULE, "token_label": lab_kms.TOKEN_LABEL,
               "key_label_prefix": lab_kms.KEY_PREFIX, "key_version": 1, "pin": {"file": str(root / "pin")},
               "env": {"SOFTHSM2_CONF": str(root / "kms" / "softhsm2.conf")}}
    section = {k: v for k, v in {**section, **(kms or {})}.items() if v is not None}
    import tomli_w

    text = TARGET + "\n" + tomli_w.dumps({"kms": section}) + "\n" + (crypto if crypto is not None else f"""
[crypto]
require_pq = true
pq_public_key = "{root / 'kms' / 'pq-public.json'}"
pq_private_wrapped = "{root / 'kms' / 'pq-private.wrapped.json'}"
pq_kek = {{key_label_prefix = "{lab_kms.PQ_KEY_PREFIX}"}}
""")
    path = root / f"{name}.toml"
    path.write_text(text)
    return path


def ztm(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ZTM), "envelope", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def assert_user_error(done: subprocess.CompletedProcess[str], message: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, f"exit 0 for a user error: {done.stdout} {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("ztm: "), f"not one line: {done.stderr!r}"
    assert message in lines[0], f"{message!r} not in {lines[0]!r}"
    assert PIN not in done.stdout + done.stderr


def test_encrypt_prints_the_document_the_procedure_takes(token):
    done = ztm("encrypt", "--target", str(target_file(token, "good")), "--tenant", TENANT, stdin=PII)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["tenant_id"] == TENANT and uuid.UUID(doc["user_id"])
    assert doc["pq_alg"] == "HPKE-MLKEM768-X25519-HKDF-SHA256-AES-256-GCM" and doc["pii_pq_wrapped_key"]
    assert doc["pii_kms_key_id"] == "pkcs11:token=ztm-kms;object=ztm-kek-v1" and doc["pii_key_version"] == 1
    assert set(doc["email"]) == {"ct", "iv", "aad"} and "cli@example.invalid" not in done.stdout
    assert PIN not in done.stdout + done.stderr


def test_user_errors_are_one_line(token, tmp_path):
    good = str(target_file(token, "good"))
    no_pin = str(target_file(token, "no-pin", {"pin": None}))
    env_pin = str(target_file(token, "env-pin", {"pin": {"env": "ZTM_TEST_UNSET_PIN"}}))
    wrong_pin = tmp_path / "wrong-pin"
    wrong_pin.write_text("not-the-pin\n")
    wrong = str(target_file(token, "wrong-pin", {"pin": {"file": str(wrong_pin)}}))
    no_module = str(target_file(token, "no-module", {"module": None}))
    no_key_id = str(target_file(token, "aws-no-key", {"provider": "aws", "module": None}))
    no_pq_key = str(target_file(token, "no-pq-key", crypto="[crypto]\nrequire_pq = true\n"))
    bad_pq_key = tmp_path / "bad-pq.json"
    bad_pq_key.write_text('{"alg": "HPKE-MLKEM768-X25519-HKDF-SHA256-AES-256-GCM", "mlkem768": "AAAA"}')
    bad_pq = str(target_file(token, "bad-pq", crypto=f'[crypto]\nrequire_pq = true\npq_public_key = "{bad_pq_key}"\n'))
    cases = [
        (("encrypt", "--target", good, "--tenant", "tenant-a"), PII, "tenant id 'tenant-a' is not a UUID"),
        (("encrypt", "--target", good, "--tenant", TENANT, "--user-id", "1 OR 1=1"), PII,
         "user id '1 OR 1=1' is not a UUID"),
        (("decrypt", "--target", good, "--tenant", TENANT, "--user-id", "42"), "", "user id '42' is not a UUID"),
        (("rewrap", "--target", good, "--tenant", "x", "--to-version", "2"), "", "tenant id 'x' is not a UUID"),
        (("rewrap", "--target", good, "--tenant", TENANT, "--to-version", "0"), "", "--to-version must be 1 or more"),
        (("encrypt", "--target", good, "--tenant", TENANT), '{"name": "A", "email": ', "cannot read the PII JSON"),
        (("encrypt", "--target", good, "--tenant", TENANT), '["A", "b@c", "1"]', "must be an object"),
        (("encrypt", "--target", good, "--tenant", TENANT, "--pii", str(tmp_path / "absent.json")), "",
         "cannot read the PII JSON"),
        (("encrypt", "--target", good, "--tenant", TENANT, "--no-pq"), PII, "--no-pq is refused"),
        (("encrypt", "--target", no_pin, "--tenant", TENANT), PII, "names no token PIN"),
        (("encrypt", "--target", env_pin, "--tenant", TENANT), PII, "ZTM_TEST_UNSET_PIN"),
        (("encrypt", "--target", wrong, "--tenant", TENANT), PII, "refused the PIN"),
        (("encrypt", "--target", no_module, "--tenant", TENANT), PII, "lacks the field 'module'"),
        (("encrypt", "--target", no_key_id, "--tenant", TENANT), PII, "lacks the field 'key_id'"),
        (("encrypt", "--target", no_pq_key, "--tenant", TENANT), PII, "names no [crypto].pq_public_key"),
        (("encrypt", "--target", bad_pq, "--tenant", TENANT), PII, "cannot read the PQ public key"),
        (("encrypt", "--target", str(tmp_path / "nowhere.toml"), "--tenant", TENANT), PII, "does not exist"),
    ]
    for argv, stdin, message in cases:
        assert_user_error(ztm(*argv, stdin=stdin), message)


def test_bad_target_toml_is_one_line(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[kms\nprovider = 'pkcs11'\n")
    assert_user_error(ztm("encrypt", "--target", str(broken), "--tenant", TENANT, stdin=PII), "not valid TOML")
