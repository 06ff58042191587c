"""Writing files with the right modes from the start (no window where a key is world-readable)."""

from __future__ import annotations

import secrets
from pathlib import Path

from ztm.files import read_private, write_private

__all__ = ["ensure_secret", "write_private", "write_public"]


def write_public(path: Path, data: bytes | str) -> None:
    write_private(path, data, mode=0o644)


def ensure_secret(path: Path, nbytes: int = 24) -> str:
    """Return the secret stored at ``path``, generating it (0600) on first use."""
    if path.exists():
        return read_private(path).decode().strip()
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value
