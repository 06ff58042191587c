"""Install Debian packages on demand (the lab and installer run as root on Debian)."""

from __future__ import annotations

import os
import shutil
import subprocess

from ztm.errors import UserError


def missing_packages(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        probe = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if "install ok installed" not in probe.stdout:
            missing.append(name)
    return missing


def ensure_packages(names: list[str]) -> None:
    missing = missing_packages(names) if shutil.which("dpkg-query") else names
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    for argv in (["apt-get", "update", "-qq"], install):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"installing {' '.join(missing)} failed: {tail[0]}")
