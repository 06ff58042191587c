"""Writing files with the right modes from the start (no window where a key is world-readable)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Create or replace ``path`` atomically with ``mode`` set before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # umask must not widen or narrow it
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes | str) -> None:
    write_private(path, data, mode=0o644)


def ensure_secret(path: Path, nbytes: int = 24) -> str:
    """Return the secret stored at ``path``, generating it (0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value
