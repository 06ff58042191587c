#!/usr/bin/env python3
"""The project's two entry points, runnable on a fresh Debian 12 machine as root with only python3.

    python3 tasks.py assess   bring up the lab, run every control, write and verify bundle.tar.gz
                              (--engine mariadb --engine mysql: both labs, one fleet run, one bundle)
    python3 tasks.py test     run the project's own tests on both engines

Each installs what it needs: Debian packages with apt-get, Python packages into .venv.
Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
# What the lab and the tests use; the lab also installs its own needs on demand.
APT_PACKAGES = [
    "python3-venv", "python3-dev", "gcc", "git", "iproute2", "procps", "nftables", "fail2ban",
    "mariadb-server", "mariadb-client", "softhsm2", "opensc", "debootstrap", "openssl", "e2fsprogs",
    "openscap-scanner", "ssg-debian", "ssg-debderived", "sslscan",
    "libmariadb-dev", "pkg-config",  # to build mysqlclient (the C driver)
    "chromium",  # tests/lab/test_reports_lab.py renders the assessor report headless
    "chromium-driver",  # selenium drives Heimdall Lite in that chromium (tests/lab/test_reports_lab.py)
    "nodejs",  # MITRE's inspecjs validates hdf.json (tools/node, installed with npm ci)
]
NODE_TOOLS = ROOT / "tools" / "node"
ENGINES = ("mariadb", "mysql")
NO_TESTS_COLLECTED = 5


def run(argv: list[str], **kwargs) -> int:
    print("+ " + " ".join(argv), flush=True)
    kwargs.setdefault("cwd", ROOT)
    return subprocess.run(argv, **kwargs).returncode


def check(argv: list[str], **kwargs) -> None:
    rc = run(argv, **kwargs)
    if rc != 0:
        sys.exit(f"tasks.py: '{' '.join(argv)}' failed with exit code {rc}")


def install() -> None:
    if os.geteuid() != 0:
        sys.exit("tasks.py: run as root (it installs Debian packages and builds network namespaces)")
    # Debian's npm; a machine whose nodejs comes from NodeSource has npm inside it (and that nodejs
    # conflicts with Debian's npm package), so npm is installed only when there is none.
    wanted = APT_PACKAGES + ([] if shutil.which("npm") else ["npm"])
    missing = [p for p in wanted if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout != "install ok installed"]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        check(["apt-get", "update", "-qq"], env=env)
        check(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    if not PY.exists():
        check([sys.executable, "-m", "venv", str(VENV)])
    check([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    check([str(PY), "-m", "pip", "install", "-q", "-e", ".[all]"])
    # inspecjs and Heimdall Lite at the versions package-lock.json pins (integrity-checked).
    check(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_TOOLS)


def pytest(args: list[str], env: dict[str, str] | None = None) -> int:
    rc = run([str(PY), "-m", "pytest", *args], env=env)
    if rc == NO_TESTS_COLLECTED:
        print("tasks.py: pytest collected no tests: that is a failure, not a pass", file=sys.stderr)
        return 1
    return rc


def assess(engines: list[str], bundle: Path) -> int:
    """One engine: its lab (instance 0). Two: both labs (instances 0 and 1) assessed as one fleet."""
    install()
    ztm = str(VENV / "bin" / "ztm")
    targets: list[str] = []
    for instance, engine in enumerate(engines):
        env = dict(os.environ, ZTM_LAB_INSTANCE=str(instance)) if len(engines) > 1 else None
        check([ztm, "lab", "up", "--engine", engine], env=env)
        targets += ["--target", f"{'lab' if instance == 0 else f'lab-{instance}'}/target.toml"]
    rc = pytest(["controls", *targets, "--evidence-out", str(bundle),
                 "--junitxml", "reports/controls-junit.xml"])
    if not bundle.exists():
        print(f"tasks.py: no evidence bundle was written to {bundle}", file=sys.stderr)
        return rc or 1
    verify = run([ztm, "evidence", "verify", str(bundle), "--ca", "lab/pki/evidence-ca/evidence-ca.pem",
                  "--crl", "lab/pki/evidence-ca/evidence-crl.pem"])
    return rc or verify


def test(engines: list[str]) -> int:
    install()
    check([str(VENV / "bin" / "ruff"), "check", "."])
    check([str(VENV / "bin" / "lint-imports")])  # the dependency rule: contracts in pyproject.toml
    # Unit tests first (no lab), then the lab suites of the engines side by side.
    worst = pytest(["tests", "-m", "not lab", "--junitxml", "reports/unit-junit.xml"])
    worst = max(worst, lab_lanes(engines))
    if set(engines) == set(ENGINES):  # both labs are still up: assess them as one fleet
        worst = max(worst, fleet_step(engines))
    return worst


def fleet_step(engines: list[str]) -> int:
    """tests/lab/test_fleet_lab.py with both lanes' labs (instances 0 and 1, still up): one run of
    every control over the two engines, one verified bundle, one target broken. The lanes skip it."""
    env = dict(os.environ, ZTM_ENGINE=engines[0], ZTM_LAB_INSTANCE="0", ZTM_FLEET_INSTANCE="1")
    print(f"+ ZTM_ENGINE={engines[0]} ZTM_LAB_INSTANCE=0 ZTM_FLEET_INSTANCE=1 (fleet of {' and '.join(engines)})",
          flush=True)
    return pytest(["tests/lab/test_fleet_lab.py", "-m", "lab", "--junitxml", "reports/lab-fleet-junit.xml"], env=env)


def lab_lanes(engines: list[str]) -> int:
    """Each engine's lab suite in its own lab instance (ZTM_LAB_INSTANCE 0, 1, ...), all at once:
    lab tests mostly wait (on servers, bans, handshakes, time-outs), so two lanes fit two cores.
    Each lane's output is kept in reports/lab-<engine>.log and printed whole when it ends."""
    (ROOT / "reports").mkdir(exist_ok=True)
    lanes = []
    for instance, engine in enumerate(engines):
        env = dict(os.environ, ZTM_ENGINE=engine, ZTM_LAB_INSTANCE=str(instance))
        argv = [str(PY), "-m", "pytest", "tests", "-m", "lab", "--junitxml", f"reports/lab-{engine}-junit.xml"]
        log = ROOT / "reports" / f"lab-{engine}.log"
        print(f"+ ZTM_ENGINE={engine} ZTM_LAB_INSTANCE={instance} {' '.join(argv)} > {log.relative_to(ROOT)}",
              flush=True)
        with open(log, "w") as out:
            lanes.append((engine, log, subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                                        stderr=subprocess.STDOUT)))
    worst = 0
    for engine, log, lane in lanes:
        rc = lane.wait()
        print(f"==== lab tests on {engine} (exit code {rc}) ====", flush=True)
        print(log.read_text(errors="replace"), flush=True)
        if rc == NO_TESTS_COLLECTED:
            print(f"tasks.py: the {engine} lab lane collected no tests: that is a failure, not a pass", file=sys.stderr)
            rc = 1
        worst = max(worst, rc)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    a = sub.add_parser("assess", help="lab up, every control, verified evidence bundle")
    a.add_argument("--engine", choices=ENGINES, action="append",
                   help="default mariadb; given twice (--engine mariadb --engine mysql), both labs as one fleet")
    a.add_argument("--bundle", type=Path, default=ROOT / "bundle.tar.gz")
    t = sub.add_parser("test", help="the project's own tests")
    t.add_argument("--engine", choices=ENGINES, action="append", help="default: both engines")
    args = parser.parse_args()
    if shutil.which("apt-get") is None:
        sys.exit("tasks.py: needs a Debian machine (apt-get)")
    if args.task == "assess":
        engines = list(dict.fromkeys(args.engine or ["mariadb"]))
        return assess(engines, args.bundle)
    return test(args.engine or list(ENGINES))


if __name__ == "__main__":
    sys.exit(main())
