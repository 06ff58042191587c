"""ZTM-HST-1: key material and file permissions on the database host (through testinfra).

Server private keys are owned by the server account and readable by it alone; the data
directory is the server's and closed to others; the configuration belongs to root and
nobody else can write it; and the CA's private key is nowhere on the database host
(found by matching every private key in the scanned folders against the CA certificate).
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.control("ZTM-HST-1")

MAX_SCANNED_FILE = 64 * 1024


@pytest.fixture(scope="module")
def host_facts(target):
    facts = target.section("host")
    if not facts.get("key_files"):
        pytest.skip("the target names no server key files ([host].key_files)")
    return facts


def _mode(f) -> str:
    return oct(f.mode)


def test_server_keys_are_private_to_the_server_account(host, target, host_facts, evidence):
    account = host_facts.get("server_account", "mysql")
    seen, problems = {}, []
    for path in host_facts["key_files"]:
        f = host.file(str(target.resolve(path)))
        if not f.exists:
            problems.append(f"{path} does not exist")
            continue
        seen[path] = {"mode": _mode(f), "user": f.user, "group": f.group}
        if f.mode & 0o077:
            problems.append(f"{path} is mode {_mode(f)}: readable or writable beyond its owner (expected 0600)")
        if f.user != account:
            problems.append(f"{path} is owned by {f.user}, not the server account {account}")
    evidence.json("key-files", seen)
    assert not problems, "server key files: " + "; ".join(problems)


def test_data_directory_and_configuration_are_locked_down(host, target, host_facts, evidence):
    account = host_facts.get("server_account", "mysql")
    problems, seen = [], {}
    datadir = host_facts.get("datadir")
    if datadir:
        d = host.file(str(target.resolve(datadir)))
        seen["datadir"] = {"path": datadir, "mode": _mode(d), "user": d.user}
        if d.user != account:
            problems.append(f"data directory {datadir} is owned by {d.user}, not {account}")
        if d.mode & 0o007:
            problems.append(f"data directory {datadir} is mode {_mode(d)}: open to other accounts")
    for path in [*host_facts.get("config_files", []), *host_facts.get("config_dirs", [])]:
        f = host.file(str(target.resolve(path)))
        if not f.exists:
            problems.append(f"{path} does not exist")
            continue
        seen[path] = {"mode": _mode(f), "user": f.user, "group": f.group}
        if f.user != "root":
            problems.append(f"{path} is owned by {f.user}, not root")
        if f.mode & 0o022:
            problems.append(f"{path} is mode {_mode(f)}: writable by group or others")
    evidence.json("ownership", seen)
    assert not problems, "data directory and configuration: " + "; ".join(problems)


def test_no_ca_private_key_on_the_database_host(host, target, host_facts, evidence):
    ca_public = x509.load_pem_x509_certificate(target.ca.read_bytes()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    found, scanned = [], []
    for path in host_facts.get("forbidden_files", []):
        if host.file(str(target.resolve(path))).exists:
            found.append(f"{path} (a file that must not exist on the database host)")
    for folder in host_facts.get("key_scan_dirs", []):
        listing = host.run(f"find {target.resolve(folder)} -xdev -type f -size -{MAX_SCANNED_FILE // 1024}k")
        for path in listing.stdout.split():
            content = host.file(path).content
            if b"PRIVATE KEY-----" not in content:
                continue
            scanned.append(path)
            try:
                key = serialization.load_pem_private_key(content, password=None)
            except (ValueError, TypeError):
                continue  # encrypted or not a key we can read: not the CA's in clear
            public = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            if public == ca_public:
                found.append(f"{path} (the CA private key)")
    evidence.json("ca-key-scan", {"private_keys_seen": scanned, "found": found,
                                  "scanned_dirs": host_facts.get("key_scan_dirs", [])})
    assert not found, "CA private key material on the database host: " + "; ".join(found)
