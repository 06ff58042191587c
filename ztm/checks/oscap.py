"""OpenSCAP through a subprocess wrapper, and its ARF results parsed with lxml.

``oscap xccdf eval`` exits 0 when every rule passed, 2 when some failed (a normal result,
not an error) and 1 on an error.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

SSG_DIR = Path("/usr/share/xml/scap/ssg/content")
XCCDF = "http://checklists.nist.gov/xccdf/1.2"
OK, FAILED_RULES, ERROR = 0, 2, 1


@dataclass
class ScanOutcome:
    content: str
    profile: str | None
    exit_code: int
    rules: dict[str, str] = field(default_factory=dict)  # rule id -> pass/fail/notapplicable/...
    score: float | None = None
    stderr: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.rules.values()))

    @property
    def failed(self) -> list[str]:
        return sorted(r for r, v in self.rules.items() if v in ("fail", "error"))


def content_for(os_id: str, version_id: str, directory: Path = SSG_DIR) -> Path | None:
    """SCAP Security Guide data stream matching the OS (e.g. ssg-debian12-ds.xml), if any."""
    candidate = directory / f"ssg-{os_id}{version_id.split('.')[0]}-ds.xml"
    return candidate if candidate.exists() else None


def available_contents(directory: Path = SSG_DIR) -> list[str]:
    return sorted(p.name.removeprefix("ssg-").removesuffix("-ds.xml") for p in directory.glob("ssg-*-ds.xml"))


def evaluate(content: Path, arf: Path, *, profile: str | None = None, rules: list[str] | None = None,
             timeout: float = 1800) -> ScanOutcome:
    argv = ["oscap", "xccdf", "eval", "--results-arf", str(arf)]
    if profile:
        argv += ["--profile", profile]
    for rule in rules or []:
        argv += ["--rule", rule]
    done = subprocess.run([*argv, str(content)], capture_output=True, text=True, timeout=timeout)
    outcome = ScanOutcome(str(content), profile, done.returncode, stderr=done.stderr.strip()[-500:])
    if done.returncode in (OK, FAILED_RULES) and arf.exists():
        outcome.rules, outcome.score = parse_arf(arf)
    return outcome


def parse_arf(arf: Path) -> tuple[dict[str, str], float | None]:
    tree = etree.parse(str(arf))
    results = {}
    for rule_result in tree.iter(f"{{{XCCDF}}}rule-result"):
        result = rule_result.find(f"{{{XCCDF}}}result")
        value = result.text if result is not None else "unknown"
        if value != "notselected":  # rules outside the profile or --rule selection
            results[rule_result.get("idref")] = value
    score = next((float(s.text) for s in tree.iter(f"{{{XCCDF}}}score") if s.text), None)
    return results, score
