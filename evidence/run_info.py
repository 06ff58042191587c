"""run.json: what ran, against what, with which tools, when and how (secrets redacted)."""

from __future__ import annotations

import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TOOLS = ("zero-trust-mysql", "pytest", "pytest-html", "pytest-xdist", "pytest-testinfra", "pymysql", "cryptography",
         "pyOpenSSL", "jsonschema", "regex", "lxml", "python-pkcs11")
SECRET_OPTION = re.compile(r"pass(word)?|pin|secret|token|credential", re.IGNORECASE)
REDACTED = "***REDACTED***"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def redact_argv(argv: list[str]) -> list[str]:
    """Values of options whose name says secret are replaced (``--x-password V`` and ``--x-password=V``)."""
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            out.append(REDACTED)
            redact_next = False
        elif arg.startswith("-") and "=" in arg and SECRET_OPTION.search(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=" + REDACTED)
        elif arg.startswith("-") and SECRET_OPTION.search(arg):
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


def run_document(*, target: dict[str, Any], started: str, finished: str, exit_status: int,
                 argv: list[str], suite_version: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "suite": {"name": "zero-trust-mysql", "version": suite_version, **git_commit()},
        "target": target,
        "started": started,
        "finished": finished,
        "exit_status": exit_status,
        "assessor_host": host_os(),
        "tools": tool_versions(),
        "command": redact_argv([Path(sys.argv[0]).name, *argv]),
    }
