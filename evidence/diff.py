"""``ztm evidence diff OLD NEW``: what changed between two verified bundles, per control.

Each bundle is copied to a private temporary file first and that copy is verified and read, so
what is compared is exactly what verified. A control is *regressed* when it was satisfied,
waived or not applicable in OLD (or partly assessed: some tests passed, the others skipped) and
is not satisfied in NEW; *fixed* the other way round;
*still failing* when not satisfied in both; *newly assessed* / *no longer assessed* when it
was / is not assessed on one side; *changed* for any other change of verdict (e.g. satisfied
to waived). For controls whose verdict did not change, the evidence files whose recorded data
differ are listed (the recording time of a JSON evidence file is not a difference).

Fleet bundles are compared per target: each control of each target is one row, named
``ZTM-X-1 [target name]`` (a target present on one side only is not assessed on the other).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.archive import read_bundle as read_archive
from evidence.results import TestResult
from evidence.summary import NOT_ASSESSED, NOT_SATISFIED, SATISFIED, verdict_of
from evidence.verify import verify_bundle
from ztm.errors import UserError

GOOD = {SATISFIED, "waived", "not applicable"}
KINDS = ("regressed", "fixed", "still failing", "newly assessed", "no longer assessed", "changed")


@dataclass
class Side:
    """One verified bundle: verdict and reason per control, severity, start time, evidence data per file."""
    verdicts: dict[str, tuple[str, str]]
    passed: dict[str, int]  # tests that passed per control: a partly assessed control had passing tests
    severity: dict[str, str]
    started: str
    evidence: dict[str, bytes]
    files: dict[str, set[str]] = field(default_factory=dict)  # a fleet: the evidence files of each row
    single: str = ""  # the name of the one target of a bundle that is not a fleet's

    def as_fleet(self) -> Side:
        """A one-target bundle's rows named like a fleet's (``ZTM-X-1 [name]``), to compare with one."""
        if not self.single:
            return self
        key = lambda cid: row_key(cid, self.single)  # noqa: E731
        prefixed = {key(c): {n for n in self.evidence if n.startswith(f"evidence/{c}/")} for c in self.verdicts}
        return Side({key(c): v for c, v in self.verdicts.items()}, {key(c): v for c, v in self.passed.items()},
                    {key(c): v for c, v in self.severity.items()}, self.started, self.evidence, prefixed)


@dataclass
class Diff:
    changes: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    evidence_changed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def regressed(self) -> bool:
        return bool(self.changes["regressed"])

    def to_json(self, old: Side, new: Side) -> dict[str, Any]:
        return {"old": {"started": old.started}, "new": {"started": new.started},
                **{k.replace(" ", "_"): v for k, v in self.changes.items()},
                "evidence_changed": self.evidence_changed}


def _evidence_data(name: str, data: bytes) -> bytes:
    if not name.endswith(".json"):
        return data
    try:
        return json.dumps(json.loads(data).get("data"), sort_keys=True).encode()
    except (ValueError, AttributeError):
        return data


def _side(files: dict[str, bytes], where: str) -> Side:
    try:
        results = json.loads(files["results.json"])
        run = json.loads(files["run.json"])
        tests = [TestResult(t["nodeid"], t["name"], [c["id"] for c in t["controls"]], outcome=t["outcome"],
                            message=t.get("message") or "", waiver=t.get("waiver"), target=t.get("target", ""))
                 for t in results["tests"]]
        evidence = {t["nodeid"]: t.get("evidence", []) for t in results["tests"]}
        controls = {c["id"]: c.get("severity", "medium") for c in results["controls"]}
        names = list(results.get("targets", {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{where}: results.json or run.json is not a results document this version reads ({exc})",
                        2) from None
    fleet = len(names) > 1
    rows = {row_key(cid, name if fleet else ""): severity for name in (names or [""]) for cid, severity in
            controls.items()}
    per: dict[str, list[TestResult]] = {key: [] for key in rows}
    owned: dict[str, set[str]] = {}
    for test in tests:
        for cid in test.controls:
            key = row_key(cid, test.target if fleet else "")
            per.setdefault(key, []).append(test)
            rows.setdefault(key, controls.get(cid, "medium"))
        if fleet and test.controls:
            owned.setdefault(row_key(test.controls[0], test.target), set()).update(evidence.get(test.nodeid, []))
    return Side({key: verdict_of(rs) for key, rs in per.items()},
                {key: sum(r.outcome == "passed" for r in rs) for key, rs in per.items()},
                rows, str(run.get("started", "?")),
                {n: _evidence_data(n, d) for n, d in files.items() if n.startswith("evidence/")}, owned,
                "" if fleet else (names[0] if names else str(run.get("target", {}).get("name") or "")))


def row_key(control: str, target: str) -> str:
    """One row of the diff: the control, and in a fleet the target it was assessed on."""
    return f"{control} [{target}]" if target else control


def load_verified(path: Path, **trust: Any) -> Side:
    """Copy, verify, read: raises UserError (exit 3) when the bundle does not verify."""
    with tempfile.TemporaryDirectory(prefix="ztm-diff-") as tmp:
        copy = Path(tmp) / "bundle.tar.gz"
        if os.path.exists(path) and not os.path.isfile(path):  # never open a FIFO or device
            raise UserError(f"{path} is not a regular file, not a bundle", 2)
        try:
            with open(path, "rb") as source, open(copy, "xb") as sink:
                shutil.copyfileobj(source, sink)
        except FileNotFoundError:
            raise UserError(f"no bundle at {path}", 2) from None
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}", 2) from None
        result = verify_bundle(copy, **trust)
        if not result.ok:
            raise UserError(f"{path} did not verify, not diffed: " + "; ".join(result.problems[:3])
                            + (f" (+{len(result.problems) - 3} more)" if len(result.problems) > 3 else ""), 3)
        return _side(read_archive(copy, None).small, str(path))


def aligned(old: Side, new: Side) -> tuple[Side, Side]:
    """A one-target bundle against a fleet's: the one target's rows are named as in the fleet."""
    if bool(old.single) != bool(new.single):
        return old.as_fleet(), new.as_fleet()
    return old, new


def diff(old: Side, new: Side) -> Diff:
    out = Diff()
    old, new = aligned(old, new)
    for cid in [*old.verdicts, *(c for c in new.verdicts if c not in old.verdicts)]:
        before, _ = old.verdicts.get(cid, (NOT_ASSESSED, "not in the old catalog"))
        after, reason = new.verdicts.get(cid, (NOT_ASSESSED, "not in the new catalog"))
        row = {"id": cid, "severity": new.severity.get(cid, old.severity.get(cid, "medium")),
               "old": before, "new": after, "reason": reason}
        if before == after:
            if after == NOT_SATISFIED:
                out.changes["still failing"].append(row)
            prefix = f"evidence/{cid}/"
            if old.files or new.files:  # a fleet: the files of this target's tests of the control
                names = sorted(old.files.get(cid, set()) | new.files.get(cid, set()))
            else:
                names = sorted({n for n in (*old.evidence, *new.evidence) if n.startswith(prefix)})
            changed = [n for n in names if old.evidence.get(n) != new.evidence.get(n)]
            if changed:
                out.evidence_changed[cid] = changed
            continue
        partly = before == NOT_ASSESSED and old.passed.get(cid, 0) > 0  # some tests passed, others skipped
        if after == NOT_SATISFIED and (before in GOOD or partly):
            kind = "regressed"
        elif before == NOT_ASSESSED and not partly:
            kind = "newly assessed"
        elif after == NOT_SATISFIED and before in GOOD:
            kind = "regressed"
        elif before == NOT_SATISFIED and after in GOOD:
            kind = "fixed"
        elif after == NOT_ASSESSED:
            kind = "no longer assessed"
        else:
            kind = "changed"
        out.changes[kind].append(row)
    return out


def text_lines(result: Diff, old: Side, new: Side) -> list[str]:
    old, new = aligned(old, new)
    lines = [f"old run started {old.started}, new run started {new.started}"]
    for kind in KINDS:
        for row in result.changes[kind]:
            why = f": {row['reason']}" if row["new"] == NOT_SATISFIED and row["reason"] else ""
            lines.append(f"{kind.upper()} {row['id']} ({row['severity']}): {row['old']} -> {row['new']}{why}")
    for cid, names in result.evidence_changed.items():
        lines.append(f"EVIDENCE CHANGED {cid} (verdict {new.verdicts[cid][0]} unchanged): {', '.join(names[:5])}"
                     + (f" (+{len(names) - 5} more)" if len(names) > 5 else ""))
    counts = ", ".join(f"{len(result.changes[k])} {k}" for k in KINDS)
    lines.append(f"{counts}; evidence changed for {len(result.evidence_changed)} unchanged control(s)")
    return lines
