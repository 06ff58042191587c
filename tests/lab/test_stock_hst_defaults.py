"""ZTM-HST-1 on a target that names none of its host facts: the key files, the data directory
and the folders searched for the CA key are derived from the server's own variables (ssl_key,
datadir, secure_file_priv, tmpdir, log paths), and the control still fails where it should."""

from __future__ import annotations

import os
import shutil
import tomllib

import pytest
import tomli_w

from tests.control_runner import run_control

pytestmark = pytest.mark.lab


def _bare_host_target(lab, tmp_path):
    doc = tomllib.loads(lab.target_file.read_text())
    for key in ("key_files", "key_scan_dirs", "datadir", "forbidden_files"):
        doc["host"].pop(key, None)
    target = tmp_path / "target.toml"
    target.write_text(tomli_w.dumps(doc))
    return target


def test_hst1_derives_its_inputs_from_the_server_and_finds_the_ca_key(lab, tmp_path):
    target = _bare_host_target(lab, tmp_path)
    stray = lab.server.secure_files / "left-behind.pem"  # a folder only the server's variables name
    shutil.copyfile(lab.pki.ca_key, stray)
    os.chmod(stray, 0o600)
    key = lab.server.tls / "server.key"
    key.chmod(0o644)
    try:
        run = run_control(target, "ZTM-HST-1")
    finally:
        stray.unlink()
        key.chmod(0o600)
    run.assert_failed("test_no_ca_private_key_on_the_database_host", "left-behind.pem (the CA private key)")
    run.assert_failed("test_server_keys_are_private_to_the_server_account", "server.key is mode 0o644")

