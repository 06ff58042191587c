"""Install Debian packages on demand (the lab and installer run as root on Debian), and fetch
packages from Debian's newer suite into a cache without installing them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ztm.errors import UserError

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
NEWER_SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def missing_packages(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        probe = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if "install ok installed" not in probe.stdout:
            missing.append(name)
    return missing


@contextmanager
def _no_service_starts() -> Iterator[None]:
    """While installing, maintainer scripts may not start services (policy-rc.d exit 101):
    the lab runs its daemons itself (sshd, fail2ban), never as system services."""
    if POLICY_RC_D.exists():  # the machine already has a policy: leave it alone
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# written by ztm while installing packages\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _run(argv: list[str], what: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{what} failed: {tail[0]}")


def ensure_packages(names: list[str], *, services_off: tuple[str, ...] = ()) -> None:
    """Install what is missing; ``services_off``: system units the packages enable that must
    stay disabled and stopped (the lab starts its own instance with its own config)."""
    missing = missing_packages(names) if shutil.which("dpkg-query") else names
    if missing:
        with _no_service_starts():
            _run(["apt-get", "update", "-qq"], f"installing {' '.join(missing)}")
            _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                 f"installing {' '.join(missing)}")
    for unit in services_off:
        if shutil.which("systemctl"):
            subprocess.run(["systemctl", "disable", "--quiet", unit], capture_output=True)
            subprocess.run(["systemctl", "stop", "--quiet", unit], capture_output=True)  # fails harmlessly offline


def download_from_newer_suite(package: str, cache: Path, suite: str = NEWER_SUITE) -> Path:
    """``apt-get download`` one package from Debian's ``suite`` into ``cache`` and return the .deb.

    A private apt configuration (its own sources list, lists and archives under ``cache``)
    keeps the machine's apt sources untouched; the Release file is verified against Debian's
    archive keyring like any apt source."""
    apt = cache / "apt"
    for folder in ("lists/partial", "archives/partial", "parts"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
    options = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={apt / 'parts'}",
               "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt}",
               "-o", "APT::Sandbox::User=root", "-qq"]
    _run(["apt-get", *options, "update"], f"reading Debian {suite}'s package lists")
    for old in cache.glob(f"{package}_*.deb"):
        old.unlink()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(["apt-get", *options, "download", f"{package}/{suite}"], cwd=cache, env=env,
                          capture_output=True, text=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if done.returncode != 0 or len(debs) != 1:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no package downloaded"]
        raise UserError(f"downloading {package} from Debian {suite} failed: {tail[0]}")
    return debs[0]


def unpack(deb: Path, into: Path) -> None:
    """Extract a .deb's files (``dpkg-deb -x``: no maintainer scripts run)."""
    _run(["dpkg-deb", "-x", str(deb), str(into)], f"unpacking {deb.name}")
