"""SCAP Security Guide content for the database host's OS, from Debian's own packages.

Debian 12's ``ssg-debian`` (0.1.65) has no Debian 12 data stream; Debian's newer suite's
(0.1.76 in trixie) has ``ssg-debian12-ds.xml``. It is fetched with apt from that suite into
the cache (``provision.os_packages.download_from_newer_suite``, the Release file verified with
Debian's archive keyring) and unpacked with ``dpkg-deb -x``: never from anywhere else.

The lab mounts the unpacked content into the database host's view; ``ztm provision scap``
copies it to ``/usr/local/share/xml/scap/ssg/content`` on the host it runs on.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

from provision.os_packages import download_from_newer_suite, unpack
from ztm.errors import UserError

CONTENT = Path("usr/share/xml/scap/ssg/content")
INSTALL_DIR = Path("/usr/local/share/xml/scap/ssg/content")
# Which Debian package carries the SSG products of an OS (os-release ID).
PACKAGES = {"debian": "ssg-debian", "ubuntu": "ssg-debderived"}


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    text = path.read_text() if path.exists() else ""
    return {k: v.strip().strip('"') for k, _, v in (line.partition("=") for line in text.splitlines()) if k}


def product(release: dict[str, str]) -> str:
    """SSG's product name for an OS: 'debian12', 'ubuntu2204'."""
    return f"{release.get('ID', '')}{release.get('VERSION_ID', '').replace('.', '')}"


def fetch(cache_dir: Path, release: dict[str, str] | None = None) -> Path:
    """The unpacked content folder holding this OS's data stream (cached; fetched once)."""
    release = release or os_release()
    name = product(release)
    package = PACKAGES.get(release.get("ID", ""))
    if package is None:
        raise UserError(f"no Debian package carries SCAP Security Guide content for {name or 'this OS'}")
    root = cache_dir / "scap" / package
    content = root / "unpacked" / CONTENT
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two labs fetching at once fetch it once
        if not (content / f"ssg-{name}-ds.xml").exists():
            deb = download_from_newer_suite(package, root)
            staging = root / "unpacked.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            unpack(deb, staging)
            if not (staging / CONTENT / f"ssg-{name}-ds.xml").exists():
                raise UserError(f"{deb.name} has no data stream for {name} (ssg-{name}-ds.xml)")
            shutil.rmtree(root / "unpacked", ignore_errors=True)
            staging.rename(root / "unpacked")
    return content


def install(content: Path, release: dict[str, str] | None = None, into: Path = INSTALL_DIR) -> Path:
    """Copy this OS's data stream to ``into`` (root-owned, 0644); returns its path."""
    name = product(release or os_release())
    source = content / f"ssg-{name}-ds.xml"
    into.mkdir(parents=True, exist_ok=True)
    target = into / source.name
    shutil.copyfile(source, target)
    target.chmod(0o644)
    return target
