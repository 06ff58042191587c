"""Read a bundle archive the way evidence/README.md's rules say, with bounded memory and time.

The archive is a regular, non-empty gzip file of at most MAX_COMPRESSED bytes; it inflates
(streamed, the actual bytes counted) to at most MAX_TAR bytes of tar; it holds at most
MAX_MEMBERS entries, each a regular file or a directory, every name under ``bundle/`` made of
NAME_CHARS components (no ``.``/``..``, nothing absolute), no name twice, no sparse file.
``evidence/offline-verify.sh`` applies the same rules with tar, gzip and head.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ztm.errors import UserError
from ztm.text import printable

ROOT = "bundle"
MAX_COMPRESSED = 64 * 2**20
MAX_TAR = 256 * 2**20  # the unpacked tar stream; a bundle is a few MiB
MAX_MEMBERS = 10000
MAX_SMALL = 2**20  # manifest, signature, token, certificates: kept in memory, so capped
NAME = re.compile(r"bundle(/[A-Za-z0-9_.-]+)*")
CHUNK = 2**16
USAGE, FAILED = 2, 1


@dataclass
class Contents:
    """SHA-256 of every regular file (bundle-relative name) and the bytes of the few small ones asked for."""
    digests: dict[str, str] = field(default_factory=dict)
    small: dict[str, bytes] = field(default_factory=dict)


def _fail(path: Path, what: str) -> UserError:
    return UserError(f"{path}: {what}", FAILED)


def _open_regular(path: Path) -> IO[bytes]:
    """The file, opened only when it is a non-empty regular file (never a FIFO or device), or a usage error."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"no bundle at {path}", USAGE) from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", USAGE) from None
    if stat.S_ISDIR(before.st_mode):
        raise UserError(f"{path} is a directory; give the bundle file (tar.gz)", USAGE)
    if not stat.S_ISREG(before.st_mode):
        raise UserError(f"{path} is not a regular file (a device, FIFO or socket), not a bundle", USAGE)
    if before.st_size == 0:
        raise UserError(f"{path} is empty, not a bundle", USAGE)
    if before.st_size > MAX_COMPRESSED:
        raise UserError(f"{path} is larger than {MAX_COMPRESSED // 2**20} MiB, not an evidence bundle", USAGE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", USAGE) from None
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between stat and open
        handle.close()
        raise UserError(f"{path} is not a regular file, not a bundle", USAGE)
    if handle.read(2) != b"\x1f\x8b":
        handle.close()
        raise UserError(f"{path} is not a gzip file, not a bundle (tar.gz)", USAGE)
    handle.seek(0)
    return handle


def _inflate(path: Path, source: IO[bytes], sink: IO[bytes]) -> None:
    """gzip -> tar, streamed: CRC and length checked, at most MAX_TAR bytes, no trailing data."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total = 0
    try:
        while chunk := source.read(CHUNK):
            while chunk:
                out = inflate.decompress(chunk, CHUNK)
                total += len(out)
                if total > MAX_TAR:
                    raise _fail(path, f"unpacks to more than {MAX_TAR // 2**20} MiB (size limit; a gzip bomb?)")
                sink.write(out)
                chunk = inflate.unconsumed_tail
                if inflate.eof:
                    if inflate.unused_data or chunk or source.read(1):
                        raise _fail(path, "damaged: unexpected data after the gzip stream")
                    return
    except zlib.error as exc:
        raise _fail(path, f"damaged: not a valid gzip stream ({exc})") from None
    if not inflate.eof:
        raise _fail(path, "damaged: the gzip stream is truncated")


def _check_member(path: Path, member: tarfile.TarInfo, seen: set[str]) -> str | None:
    """The bundle-relative name of a regular file, None for a directory; anything else fails."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    shown = printable(member.name)
    if not NAME.fullmatch(name) or {".", ".."} & set(name.split("/")):
        raise _fail(path, f"member {shown!r}: bad name (only bundle/ and letters, digits, '.', '_', '-')")
    if name in seen:
        raise _fail(path, f"member {shown}: duplicate member (a second copy could hide the signed one)")
    seen.add(name)
    if member.isdir():
        return None
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
        kind = ("symlink" if member.issym() else "hardlink" if member.islnk() else "FIFO" if member.isfifo()
                else "device" if member.isdev() else "sparse file" if member.issparse() or member.sparse
                else "special entry")
        raise _fail(path, f"member {shown}: not a regular file ({kind})")
    if name == ROOT:
        raise _fail(path, f"member {shown}: not a regular file expected (bundle/ is the folder)")
    return name.removeprefix(ROOT + "/")


def read_bundle(path: Path, keep: frozenset[str] | None) -> Contents:
    """Every regular file's SHA-256 and the content of the files named in ``keep`` (each at most MAX_SMALL;
    ``None``: every file, bounded by MAX_TAR in all)."""
    contents = Contents()
    with _open_regular(path) as source, tempfile.TemporaryFile() as tar_file:
        _inflate(path, source, tar_file)
        tar_file.seek(0)
        seen: set[str] = set()
        try:
            with tarfile.open(fileobj=tar_file, mode="r:") as tar:
                for count, member in enumerate(tar, 1):
                    if count > MAX_MEMBERS:
                        raise _fail(path, f"more than {MAX_MEMBERS} members (member count limit)")
                    name = _check_member(path, member, seen)
                    if name is None:
                        continue
                    _read_member(path, tar, member, name, keep is None or name in keep, keep is None, contents)
        except (tarfile.TarError, EOFError) as exc:
            raise _fail(path, f"damaged: not a readable tar inside the gzip ({exc})") from None
    files = set(contents.digests)
    for name in files:  # a file that is also a folder of another member cannot be unpacked
        if any(other.startswith(name + "/") for other in files):
            raise _fail(path, f"member bundle/{name}: duplicate member (a file and a folder of the same name)")
    return contents


def _read_member(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, keep: bool, unbounded: bool,
                 contents: Contents) -> None:
    handle = tar.extractfile(member)
    digest, size, kept = hashlib.sha256(), 0, bytearray()
    while handle is not None and (chunk := handle.read(CHUNK)):
        digest.update(chunk)
        size += len(chunk)
        if keep:
            if size > MAX_SMALL and not unbounded:
                raise _fail(path, f"member bundle/{name}: larger than {MAX_SMALL // 1024} KiB (size limit)")
            kept += chunk
    if size != member.size:
        raise _fail(path, f"damaged: member bundle/{name} is cut short")
    contents.digests[name] = digest.hexdigest()
    if keep:
        contents.small[name] = bytes(kept)
