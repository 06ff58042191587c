"""ZTM-HST-1: key material and file permissions on the database host (through testinfra).

Server private keys are owned by the server account and readable by it alone; the data
directory is the server's and closed to others; the configuration belongs to root and
nobody else can write it; and the CA's private key is nowhere on the database host
(found by matching every private key in the scanned folders against the CA certificate).

What the assessor cannot judge is a finding too, never a silent pass: a file or folder it
may not read or list, and an encrypted private key (it could be the CA's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.control("ZTM-HST-1")

MAX_SCANNED_KIB = 64
DENIED = re.compile(r"^find: '(.+)': Permission denied$")  # with LC_ALL=C: plain quotes, English


@dataclass(frozen=True)
class Stat:
    mode: int
    user: str
    group: str

    def seen(self) -> dict[str, str]:
        return {"mode": oct(self.mode), "user": self.user, "group": self.group}


def _stat(db_host, path: str) -> Stat | str:
    """The file's mode and owners, or why they cannot be read ("does not exist", "permission denied")."""
    done = db_host.run("LC_ALL=C stat -L -c %s -- %s", "%a %U %G", path)
    if done.rc == 0:
        mode, user, group = done.stdout.split()
        return Stat(int(mode, 8), user, group)
    if "Permission denied" in done.stderr:
        return "cannot be examined: the assessor may not reach it (permission denied)"
    return "does not exist"


@pytest.fixture(scope="module")
def host_facts(target):
    facts = target.section("host")
    if not facts.get("key_files"):
        pytest.skip("the target names no server key files ([host].key_files)")
    return facts


def test_server_keys_are_private_to_the_server_account(db_host, target, host_facts, evidence):
    account = host_facts.get("server_account", "mysql")
    seen, problems = {}, []
    for path in host_facts["key_files"]:
        st = _stat(db_host, str(target.resolve(path)))
        if isinstance(st, str):
            problems.append(f"{path} {st}")
            continue
        seen[path] = st.seen()
        if st.mode & 0o077:
            problems.append(f"{path} is mode {oct(st.mode)}: readable or writable beyond its owner (expected 0600)")
        if st.user != account:
            problems.append(f"{path} is owned by {st.user}, not the server account {account}")
    evidence.json("key-files", seen)
    assert not problems, "server key files: " + "; ".join(problems)


def test_data_directory_and_configuration_are_locked_down(db_host, target, host_facts, evidence):
    account = host_facts.get("server_account", "mysql")
    problems, seen = [], {}
    datadir = host_facts.get("datadir")
    if datadir:
        st = _stat(db_host, str(target.resolve(datadir)))
        if isinstance(st, str):
            problems.append(f"data directory {datadir} {st}")
        else:
            seen["datadir"] = {"path": datadir, **st.seen()}
            if st.user != account:
                problems.append(f"data directory {datadir} is owned by {st.user}, not {account}")
            if st.mode & 0o007:
                problems.append(f"data directory {datadir} is mode {oct(st.mode)}: open to other accounts")
    for path in [*host_facts.get("config_files", []), *host_facts.get("config_dirs", [])]:
        st = _stat(db_host, str(target.resolve(path)))
        if isinstance(st, str):
            problems.append(f"{path} {st}")
            continue
        seen[path] = st.seen()
        if st.user != "root":
            problems.append(f"{path} is owned by {st.user}, not root")
        if st.mode & 0o022:
            problems.append(f"{path} is mode {oct(st.mode)}: writable by group or others")
    evidence.json("ownership", seen)
    assert not problems, "data directory and configuration: " + "; ".join(problems)


def _public_der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_no_ca_private_key_on_the_database_host(db_host, target, host_facts, evidence):
    ca_public = x509.load_pem_x509_certificate(target.ca.read_bytes()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    found, encrypted, unreadable, unlisted, missing, scanned = [], [], [], [], [], []
    for path in host_facts.get("forbidden_files", []):
        if not isinstance(_stat(db_host, str(target.resolve(path))), str):
            found.append(f"{path} (a file that must not exist on the database host)")
    for folder in host_facts.get("key_scan_dirs", []):
        listing = db_host.run("LC_ALL=C find %s -xdev -type f -size -%s", str(target.resolve(folder)),
                           f"{MAX_SCANNED_KIB}k")
        denied = [m[1] for m in map(DENIED.match, listing.stderr.splitlines()) if m]
        unlisted += denied
        if listing.rc != 0 and not denied:
            missing.append(folder)
        for path in listing.stdout.splitlines():
            read = db_host.run("cat -- %s", path)
            if read.rc != 0:
                unreadable.append(path)
                continue
            content = read.stdout_bytes
            pem = b"PRIVATE KEY-----" in content
            try:  # PEM, or DER (a key saved in binary form is just as much the CA's key)
                key = (serialization.load_pem_private_key if pem else serialization.load_der_private_key)(
                    content, password=None)
            except TypeError:  # "Password was not given but private key is encrypted"
                scanned.append(path)
                encrypted.append(path)
                continue
            except ValueError:  # not a key (or PEM armour around one we do not know): not a usable CA key
                if pem:
                    scanned.append(path)
                continue
            scanned.append(path)
            if _public_der(key) == ca_public:
                found.append(f"{path} (the CA private key)")
    evidence.json("ca-key-scan", {"private_keys_seen": scanned, "found": found, "encrypted": encrypted,
                                  "unreadable_files": unreadable, "unlisted_folders": unlisted,
                                  "missing_folders": missing, "scanned_dirs": host_facts.get("key_scan_dirs", [])})
    problems = []
    if found:
        problems.append("CA private key material on the database host: " + "; ".join(found))
    if encrypted:
        problems.append("cannot assess encrypted private key(s), which could be the CA's: " + ", ".join(encrypted))
    if unreadable:
        problems.append("cannot assess files the assessor may not read: " + ", ".join(unreadable))
    if unlisted:
        problems.append("cannot assess folders the assessor may not list: " + ", ".join(unlisted))
    if missing:
        problems.append("scan folders that do not exist on the host: " + ", ".join(missing))
    assert not problems, "; ".join(problems)
