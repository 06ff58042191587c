#!/usr/bin/env python3
"""Per-control times on the lab, from a junit run of the suite; writes JSON
(bench/results/controls-<engine>.json).

Runs ``pytest controls --target <lab target> --junitxml ...`` once and sums each control
module's test times (setup, call and teardown, as junit records them). The baseline printed
next to them, from the same run, is the whole suite's wall time and the 3 s goal per module.

Usage (root, lab up, project root): .venv/bin/python -m bench.controls
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from bench.results_file import write_results
from provision import lab as lab_mod
from ztm.target import load_target

GOAL_S = 3.0


def module_times(junit: Path) -> dict[str, float]:
    """Seconds per control module (junit classname 'controls.test_x')."""
    times: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit).getroot().iter("testcase"):
        times[case.get("classname", "?").rsplit(".", 1)[-1]] += float(case.get("time") or 0)
    return dict(sorted(times.items(), key=lambda kv: -kv[1]))


def outcomes(junit: Path) -> dict[str, object]:
    root = ET.parse(junit).getroot()
    suite = next(root.iter("testsuite"))
    failed = [f"{c.get('classname', '?').rsplit('.', 1)[-1]}::{c.get('name')}" for c in root.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {**{k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}, "failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lab = lab_mod.Lab(lab_mod.default_lab_dir())
    target = load_target(lab.target_file)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "controls", "--target", str(lab.target_file), "-q",
                               "-p", "no:randomly", f"--junitxml={junit}"], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if not junit.exists():
            print(f"the control run wrote no junit report: {(done.stderr or done.stdout)[-300:]}", file=sys.stderr)
            return 2
        times, counts = module_times(junit), outcomes(junit)
    doc = {"benchmark": "controls", "engine": target.engine, "suite_wall_s": round(wall, 1),
           "outcomes": counts, "goal_per_module_s": GOAL_S,
           "modules_s": {name: round(s, 2) for name, s in times.items()},
           "over_goal": [name for name, s in times.items() if s > GOAL_S]}
    write_results(doc, "controls", target.engine, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
