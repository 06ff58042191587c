"""ZTM-HST-1: key material and file permissions on the database host (through testinfra).

Server private keys are owned by the server account and readable by it alone; the data
directory is the server's and closed to others; the configuration belongs to root and
nobody else can write it; and the CA's private key is nowhere on the database host
(found by matching every private key in the scanned folders against the CA certificate).

What the assessor cannot judge is a finding too, never a silent pass: a file or folder it
may not read or list, and an encrypted private key (it could be the CA's).
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ztm.resources.host import path_facts, scan_private_keys

pytestmark = pytest.mark.control("ZTM-HST-1")


# Where the server keeps files, asked of the server itself when the target does not say.
SERVER_PATHS = ("datadir", "secure_file_priv", "tmpdir", "ssl_key", "ssl_ca", "log_error", "general_log_file",
                "slow_query_log_file")
KEY_SCAN_BUDGET_S = 120  # a scan of the server's folders is bounded in time; what is left is a finding


@pytest.fixture(scope="module")
def host_facts(target, evidence_of_server_paths):
    """[host] as given, with what it leaves out derived from the server's own variables: key
    files (ssl_key), datadir, and the folders the CA key is looked for in (data, secure-file,
    tmp and log folders, the configuration folders, the server account's home)."""
    facts = dict(target.section("host"))
    paths = evidence_of_server_paths
    if not facts.get("key_files") and paths.get("ssl_key"):
        facts["key_files"] = [paths["ssl_key"]]
    facts.setdefault("datadir", paths.get("datadir", "").rstrip("/") or None)
    if not facts.get("key_scan_dirs"):
        dirs = [paths.get(n, "").rstrip("/") for n in ("datadir", "secure_file_priv", "tmpdir")]
        dirs += [v.rsplit("/", 1)[0] for n in ("ssl_key", "ssl_ca", "log_error", "general_log_file",
                                                "slow_query_log_file") if (v := paths.get(n, "")).startswith("/")]
        dirs += ["/etc/mysql", "/var/lib/mysql"]  # configuration folders and the server account's home
        facts["key_scan_dirs"] = [d for d in dict.fromkeys(dirs) if d.startswith("/")]
        facts["key_scan_derived"] = True
    return facts


@pytest.fixture(scope="module")
def evidence_of_server_paths(target, request) -> dict[str, str]:
    """The server's path variables through the admin path; {} when the target has no admin role."""
    if "admin" not in target.roles:
        return {}
    admin = request.getfixturevalue("admin")
    with admin.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ", ".join(["%s"] * len(SERVER_PATHS)) + ")",
                    SERVER_PATHS)
        return {str(k): str(v or "") for k, v in cur.fetchall()}


def test_server_keys_are_private_to_the_server_account(db_host, target, policy, host_facts, evidence):
    if not host_facts.get("key_files"):
        pytest.skip("not assessed: the target names no server key files ([host].key_files) and the server "
                    "reports no ssl_key")
    account, forbidden = host_facts.get("server_account", "mysql"), policy.mode("key_forbidden_mode")
    seen, problems = {}, []
    for path in host_facts["key_files"]:
        st = path_facts(db_host, str(target.resolve(path)))
        if st.unavailable:
            problems.append(f"{path} {st.unavailable}")
            continue
        seen[path] = st.seen()
        if st.mode & forbidden:
            problems.append(f"{path} is mode {oct(st.mode)}: readable or writable beyond its owner "
                            f"(mode bits {oct(forbidden)} must be clear)")
        if st.user != account:
            problems.append(f"{path} is owned by {st.user}, not the server account {account}")
    evidence.json("key-files", seen)
    assert not problems, "server key files: " + "; ".join(problems)


def test_data_directory_and_configuration_are_locked_down(db_host, target, policy, host_facts, evidence):
    account, files = host_facts.get("server_account", "mysql"), policy.files
    problems, seen = [], {}
    datadir = host_facts.get("datadir")
    if datadir:
        st = path_facts(db_host, str(target.resolve(datadir)))
        if st.unavailable:
            problems.append(f"data directory {datadir} {st.unavailable}")
        else:
            seen["datadir"] = {"path": datadir, **st.seen()}
            if st.user != account:
                problems.append(f"data directory {datadir} is owned by {st.user}, not {account}")
            if st.mode & policy.mode("datadir_forbidden_mode"):
                problems.append(f"data directory {datadir} is mode {oct(st.mode)}: open to other accounts")
    for path in [*host_facts.get("config_files", []), *host_facts.get("config_dirs", [])]:
        st = path_facts(db_host, str(target.resolve(path)))
        if st.unavailable:
            problems.append(f"{path} {st.unavailable}")
            continue
        seen[path] = st.seen()
        if st.user != files["config_owner"]:
            problems.append(f"{path} is owned by {st.user}, not {files['config_owner']}")
        if st.mode & policy.mode("config_forbidden_mode"):
            problems.append(f"{path} is mode {oct(st.mode)}: writable by group or others")
    evidence.json("ownership", seen)
    assert not problems, "data directory and configuration: " + "; ".join(problems)


def test_no_ca_private_key_on_the_database_host(db_host, target, policy, host_facts, evidence):
    ca_public = x509.load_pem_x509_certificate(target.need_ca().read_bytes()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    found = [f"{path} (a file that must not exist on the database host)"
             for path in host_facts.get("forbidden_files", [])
             if not path_facts(db_host, str(target.resolve(path))).unavailable]
    folders = [str(target.resolve(folder)) for folder in host_facts.get("key_scan_dirs", [])]
    scan = scan_private_keys(db_host, folders, policy.files["max_scanned_kib"], KEY_SCAN_BUDGET_S)
    found += [f"{path} (the CA private key)" for path, public in scan.public_keys.items() if public == ca_public]
    evidence.json("ca-key-scan", {"private_keys_seen": scan.private_keys_seen, "found": found,
                                  "encrypted": scan.encrypted, "unreadable_files": scan.unreadable,
                                  "unlisted_folders": scan.unlisted, "missing_folders": scan.missing,
                                  "unscanned_files": scan.unscanned,
                                  "scanned_dirs": host_facts.get("key_scan_dirs", []),
                                  "scan_dirs_derived_from_server": bool(host_facts.get("key_scan_derived"))})
    problems = []
    if found:
        problems.append("CA private key material on the database host: " + "; ".join(found))
    if scan.encrypted:
        problems.append("cannot assess encrypted private key(s), which could be the CA's: "
                        + ", ".join(scan.encrypted))
    if scan.unreadable:
        problems.append("cannot assess files the assessor may not read: " + ", ".join(scan.unreadable))
    if scan.unlisted:
        problems.append("cannot assess folders the assessor may not list: " + ", ".join(scan.unlisted))
    if scan.missing and not host_facts.get("key_scan_derived"):  # derived folders may legitimately be absent
        problems.append("scan folders that do not exist on the host: " + ", ".join(scan.missing))
    if scan.unscanned:
        problems.append(f"the key scan ran out of its {KEY_SCAN_BUDGET_S} s budget; not read: "
                        + ", ".join(scan.unscanned[:20]) + (" ..." if len(scan.unscanned) > 20 else ""))
    assert not problems, "; ".join(problems)
