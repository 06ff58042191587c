#!/usr/bin/env python3
"""Lab bring-up and control-suite times; writes JSON (default bench/results/lab_bringup-<engine>.json).

1. cold: `ztm lab down`, then `ztm lab up` (a new PKI, datadir, token, accounts and data
   plane; engine packages and the MySQL rootfs stay cached, as on a second machine run).
2. warm: `ztm lab up` again on the running lab (what every test session does).
3. the whole control suite against the lab (`pytest controls --target ...`), wall clock.

Only the lab of $ZTM_LAB_INSTANCE is touched; it is left up.
Usage (root, project root): .venv/bin/python -m bench.lab_bringup [--engine mysql] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.results_file import write_results
from provision import lab as lab_mod

ROOT = Path(__file__).resolve().parent


def _timed(argv: list[str], allowed: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT.parent, env=dict(os.environ))
    elapsed = time.monotonic() - start
    if done.returncode not in allowed:
        sys.exit(f"bench: {' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return elapsed, done


def _steps(stdout: str) -> dict[str, float]:
    """The step timings 'ztm lab up' prints: '(install 0.1s, network 0.1s, ...)'."""
    inside = stdout.rsplit("(", 1)[-1]
    return {name: float(value) for name, value in re.findall(r"(?:^|, )([^()]+?) ([\d.]+)s", inside)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("mariadb", "mysql"), default="mariadb")
    parser.add_argument("--runs", type=int, default=1, help="cold/warm pairs to time (default 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    ztm = [sys.executable, "-m", "ztm.cli", "lab", "--dir", str(lab.dir)]
    runs = []
    for _ in range(args.runs):
        _timed([*ztm, "down"])
        cold, cold_out = _timed([*ztm, "up", "--engine", args.engine])
        warm, warm_out = _timed([*ztm, "up", "--engine", args.engine])
        runs.append({"cold_seconds": round(cold, 2), "cold_steps": _steps(cold_out.stdout),
                     "warm_seconds": round(warm, 2), "warm_steps": _steps(warm_out.stdout)})
    # Exit 1 (a control failed) is still a timed run; its exit code is recorded.
    suite, suite_run = _timed([sys.executable, "-m", "pytest", "controls", "--target", str(lab.target_file), "-q",
                               "-p", "no:cacheprovider"], allowed=(0, 1))
    result = {"benchmark": "lab_bringup", "engine": args.engine, "instance": os.environ.get("ZTM_LAB_INSTANCE", "0"),
              "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version()},
              "runs": runs, "control_suite_seconds": round(suite, 2), "control_suite_exit_code": suite_run.returncode}
    write_results(result, "lab_bringup", args.engine, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
