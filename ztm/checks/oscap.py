"""OpenSCAP on the database host, through testinfra, and its ARF results parsed with lxml.

``oscap xccdf eval`` runs *on the host* (``db_host.run``: over SSH in the lab and on a VM),
so the machine scanned is the database host, never the assessor's. The ARF file is written
to a private temporary folder there (without system characteristics: collected file contents
stay on the host), read back through testinfra and parsed here.

SCAP Security Guide data streams are looked for where Debian's ``ssg-*`` packages put them
and where ``ztm provision scap`` installs content from Debian's newer suite
(``/usr/local/share/…``; Debian 12's own ``ssg-debian`` has no Debian 12 data stream).

``oscap xccdf eval`` exits 0 when every rule passed, 2 when some failed (a normal result,
not an error) and 1 on an error.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

SSG_DIR = "/usr/share/xml/scap/ssg/content"
LOCAL_SSG_DIR = "/usr/local/share/xml/scap/ssg/content"
SSG_DIRS = (SSG_DIR, LOCAL_SSG_DIR)  # later wins: content installed locally is newer than the OS package's
DEFAULT_PROFILE = "standard"  # oscap matches a profile id by suffix
SEVERITIES = ("high", "medium", "low", "unknown")
XCCDF = "http://checklists.nist.gov/xccdf/1.2"
OK, FAILED_RULES, ERROR = 0, 2, 1
TIMED_OUT = 124  # coreutils timeout(1)
FAILING = ("fail", "error")
NOT_EVALUATED = ("notapplicable", "notchecked", "notselected", "informational")


@dataclass
class ScanOutcome:
    content: str
    profile: str | None
    exit_code: int
    rules: dict[str, dict[str, str]] = field(default_factory=dict)  # rule id -> result, severity, title
    score: float | None = None
    stderr: str = ""
    tailoring: str | None = None
    arf: bytes | None = None

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(r["result"] for r in self.rules.values()))

    @property
    def failed(self) -> list[str]:
        return sorted(rule for rule, r in self.rules.items() if r["result"] in FAILING)

    def failed_with(self, severities: tuple[str, ...] | list[str]) -> list[str]:
        """Failing rules whose severity is one of ``severities``."""
        return [rule for rule in self.failed if self.rules[rule]["severity"] in severities]

    @property
    def applicable(self) -> bool:
        """Did any rule actually get checked (content for another OS makes all notapplicable)?"""
        return any(r["result"] not in NOT_EVALUATED for r in self.rules.values())

    def evidence(self) -> dict[str, Any]:
        return {"content": self.content, "profile": self.profile, "tailoring": self.tailoring,
                "exit_code": self.exit_code, "score": self.score, "counts": self.counts, "rules": self.rules}


def os_release(host) -> dict[str, str]:
    f = host.file("/etc/os-release")
    text = f.content_string if f.exists else ""
    return {k: v.strip().strip('"') for k, _, v in (line.partition("=") for line in text.splitlines()) if k}


def installed_contents(host, directories: tuple[str, ...] = SSG_DIRS) -> dict[str, str]:
    """SCAP Security Guide data streams on the host: product ('debian12') -> path."""
    contents: dict[str, str] = {}
    for directory in directories:
        listing = host.run("ls -1 %s", directory)
        names = listing.stdout.split() if listing.rc == 0 else []
        found = (re.fullmatch(r"ssg-(.+)-ds\.xml", n) for n in names)
        contents.update({m[1]: f"{directory}/{m[0]}" for m in found if m})
    return contents


def content_for(release: dict[str, str], contents: dict[str, str]) -> str | None:
    """The data stream SSG names for this OS: 'debian12', 'ubuntu2204', 'rhel9', 'fedora'."""
    os_id, version = release.get("ID", ""), release.get("VERSION_ID", "")
    for product in (f"{os_id}{version.replace('.', '')}", f"{os_id}{version.split('.')[0]}", os_id):
        if os_id and product in contents:
            return contents[product]
    return None


def evaluate(host, content: str, *, profile: str | None = None, rules: list[str] | None = None,
             tailoring: str | None = None, keep_arf: bool = False, timeout: int = 1800,
             tmp_root: str = "/tmp") -> ScanOutcome:
    """Run the scan on the host; the ARF is parsed when oscap produced one (exit 0 or 2).
    ``tailoring``: an XCCDF tailoring file on the host; ``keep_arf``: return the ARF's bytes."""
    made = host.run("mktemp -d %s", f"{tmp_root}/ztm-oscap.XXXXXXXX")  # 0700: the results stay private
    if made.rc != 0:
        return ScanOutcome(content, profile, ERROR, stderr=f"cannot make a temporary folder: {made.stderr.strip()}",
                           tailoring=tailoring)
    workdir = made.stdout.strip()
    arf = f"{workdir}/arf.xml"
    try:
        args = [str(timeout), "--without-syschar", "--results-arf", arf]
        if tailoring:
            args += ["--tailoring-file", tailoring]
        if profile:
            args += ["--profile", profile]
        for rule in rules or []:
            args += ["--rule", rule]
        args.append(content)
        done = host.run("timeout %s oscap xccdf eval" + " %s" * (len(args) - 1), *args)
        stderr = done.stderr.strip()[-500:]
        if done.rc == TIMED_OUT:
            stderr = f"oscap did not finish within {timeout} s"
        outcome = ScanOutcome(content, profile, done.rc, stderr=stderr, tailoring=tailoring)
        if done.rc in (OK, FAILED_RULES) and host.file(arf).exists:
            raw = host.file(arf).content
            outcome.rules, outcome.score = parse_arf(raw)
            outcome.arf = raw if keep_arf else None
        return outcome
    finally:
        host.run("rm -rf %s", workdir)


def parse_arf(arf: bytes) -> tuple[dict[str, dict[str, str]], float | None]:
    """Per-rule results (with the benchmark's title and severity) and the score of an ARF file."""
    tree = etree.fromstring(arf, parser=etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    titles = {}
    for rule in tree.iter(f"{{{XCCDF}}}Rule"):
        title = rule.find(f"{{{XCCDF}}}title")
        titles[rule.get("id")] = (title.text or "").strip() if title is not None else ""
    results = {}
    for rule_result in tree.iter(f"{{{XCCDF}}}rule-result"):
        result = rule_result.find(f"{{{XCCDF}}}result")
        value = result.text if result is not None and result.text else "unknown"
        if value == "notselected":  # outside the profile or the --rule selection
            continue
        rule_id = rule_result.get("idref")
        results[rule_id] = {"result": value, "severity": rule_result.get("severity", "unknown"),
                            "title": titles.get(rule_id, "")}
    score = next((float(s.text) for s in tree.iter(f"{{{XCCDF}}}score") if s.text), None)
    return results, score
