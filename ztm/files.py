"""Private files written safely: created 0600 (or the mode asked) from the first byte, under
a random temporary name in the same folder that no one can pre-create or point elsewhere
(O_CREAT|O_EXCL|O_NOFOLLOW), then renamed over the target and the folder synced."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Create or replace ``path`` atomically with ``mode`` set before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = memoryview(data.encode() if isinstance(data, str) else data)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, _FLAGS, mode)  # a name that exists already (any kind of file) is an error
    try:
        os.fchmod(fd, mode)  # umask must not widen or narrow it
        while payload:
            payload = payload[os.write(fd, payload):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)  # rename replaces a symlink at ``path`` itself, never its target
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_private(path: Path) -> bytes:
    """Read a private file without following a symlink put in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
