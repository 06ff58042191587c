"""run.json: what ran, against what, with which tools, when and how (secrets redacted)."""

from __future__ import annotations

import platform
import re
import socket
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TOOLS = ("zero-trust-mysql", "pytest", "pytest-html", "pytest-xdist", "pytest-testinfra", "pytest-metadata",
         "pymysql", "cryptography", "pyOpenSSL", "jsonschema", "referencing", "regex", "lxml", "python-pkcs11",
         "tomli-w", "boto3", "pykmip")
# Option or setting names whose value is a secret. A *file* holding a key (--evidence-key FILE) is
# not a secret and stays; an API or access key given inline is.
SECRET_PART = re.compile(r"passw(or)?d|passphrase|secret|token|credential", re.IGNORECASE)
SECRET_WORD = {"pin", "pass", "pwd", "apikey"}
SECRET_PAIR = re.compile(r"(api|access)[-_.]key", re.IGNORECASE)
OPTION = re.compile(r"^--?[A-Za-z][\w.-]*$")
SETTING = re.compile(r"^(--?)?([A-Za-z_][\w.-]*)=(.*)$", re.DOTALL)
REDACTED = "***REDACTED***"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def is_secret_name(name: str) -> bool:
    """'db-password', 'MYSQL_PWD', 'token', 'hsm.pin', 'api_key' are; 'mapping', 'evidence-key' are not."""
    words = re.split(r"[-_.]+", name.lstrip("-").lower())
    return bool(SECRET_PART.search(name) or SECRET_PAIR.search(name) or SECRET_WORD.intersection(words))


def redact_argv(argv: list[str]) -> list[str]:
    """Values of secret-named options and settings become REDACTED.

    ``--db-password V``, ``--db-password=V``, ``-o mysql_pin=V`` and ``ZTM_SECRET=V`` are redacted;
    ``--evidence-key FILE`` and test paths are kept.
    """
    out: list[str] = []
    redact_next = False
    for arg in argv:
        setting = SETTING.match(arg)
        if redact_next:
            out.append(REDACTED)
            redact_next = False
        elif setting and is_secret_name(setting.group(2)):
            out.append(f"{setting.group(1) or ''}{setting.group(2)}={REDACTED}")
        elif OPTION.match(arg) and is_secret_name(arg):
            out.append(arg)
            redact_next = True
        else:
            out.append(arg)
    return out


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["openssl (python ssl)"] = ssl.OPENSSL_VERSION
    try:
        from OpenSSL import SSL

        versions["openssl (pyOpenSSL)"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    except ImportError:
        pass
    return versions


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None}
    return {"git_commit": commit, "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def host_os() -> dict[str, str]:
    pretty = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "os": pretty, "kernel": platform.release(),
            "machine": platform.machine()}


def _program() -> list[str]:
    """How pytest was started: 'pytest', or 'python -m pytest' (argv[0] is then __main__.py)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "pytest"
    return [Path(sys.executable).name, "-m", "pytest"] if name == "__main__.py" else [name]


def server_version(target_file: str) -> tuple[str | None, str | None]:
    """(version, None) as the server reports it over the target's admin path, or (None, why not).

    For runs whose tests did not open the admin path (e.g. ``--control ZTM-TLS-1``).
    """
    import pymysql

    from ztm.db import connect
    from ztm.errors import UserError
    from ztm.target import load_target

    try:
        target = load_target(target_file)
        if "admin" not in target.roles:
            return None, "server version not read: the target has no admin role"
        conn = connect(target, target.role("admin"))
    except UserError as exc:
        return None, f"server version not read: {exc}"
    except (pymysql.err.Error, OSError) as exc:
        return None, f"server version not read: {exc.args[-1] if exc.args else exc}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            (version,) = cur.fetchone()
    except pymysql.err.Error as exc:
        return None, f"server version not read: {exc.args[-1] if exc.args else exc}"
    finally:
        conn.close()
    return str(version), None


def policy_in_force(target_file: Any) -> tuple[Any, str | None]:
    """(the run's ztm.policy.Policy, None), or (None, why not): read from the target file the
    run used, as the ``policy`` fixture read it."""
    from ztm.errors import UserError
    from ztm.policy import policy_for
    from ztm.target import load_target

    if not target_file:
        return None, "no target file: no policy was in force"
    try:
        return policy_for(load_target(target_file)), None
    except UserError as exc:
        return None, f"policy not read: {exc}"


def policy_summary(policy: Any, why_not: str | None) -> dict[str, Any]:
    """What run.json says of the policy: profile, overridden values and the digest of policy.json."""
    if policy is None:
        return {"note": str(why_not)}
    return {"profile": policy.name, "overridden": policy.overridden, "file": "policy.json",
            "sha256": policy.digest}


def run_document(*, target: dict[str, Any], started: str, finished: str, exit_status: int,
                 argv: list[str], suite_version: str, tools: dict[str, str] | None = None,
                 policy: dict[str, Any] | None = None, fail_on: str = "any",
                 targets: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "suite": {"name": "zero-trust-mysql", "version": suite_version, **git_commit()},
        "target": target,
        **({"targets": targets} if targets else {}),
        "started": started,
        "finished": finished,
        "exit_status": exit_status,
        "assessor_host": host_os(),
        "tools": tools if tools is not None else tool_versions(),
        "command": redact_argv([*_program(), *argv]),
        "fail_on": fail_on,
        **({"policy": policy} if policy is not None else {}),
    }
