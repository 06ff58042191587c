"""ZTM-AUD-3: the off-host anchor of the audit chain is continuous, fresh and consistent.

The anchors in the write-once sink(s) must form one signed chain (each links to the one
before, signatures verify with the anchor public key, sequence numbers increase); the
newest must be younger than two anchor intervals; and the database must agree with it:
the anchored row still carries the anchored hash, no row behind it was added or removed,
the head has not gone back, the audit DDL and guard triggers are unchanged, and the chain
recomputes from the anchor to the head.
"""

from __future__ import annotations

import pytest

from provision.anchor_cli import DEFAULT_INTERVAL, _public_key
from provision.anchor_sinks import sink_for
from ztm import anchoring

pytestmark = pytest.mark.control("ZTM-AUD-3")


@pytest.fixture(scope="module")
def anchor(target):
    section = target.section("anchor")
    if not section.get("sinks") or not section.get("public_key"):
        pytest.skip("the target names no anchor sinks and public key ([anchor]): nothing to check off-host")
    sinks = [sink_for(s, target.resolve) for s in section["sinks"]]
    public = _public_key(target, section)
    primary = sinks[0].read()
    reports = []
    for index, sink in enumerate(sinks):
        records = primary if index == 0 else sink.read()
        # The first sink must hold the whole chain; a sink added later may start mid-chain
        # but must agree with the first anchor for anchor.
        report = anchoring.verify_anchor_chain(records, public, allow_late_start=index > 0)
        if index:
            report.problems += anchoring.cross_check(primary, records)
        reports.append((sink, report))
    return section, reports


def test_anchor_chain_is_continuous_and_signed(anchor, evidence):
    _, reports = anchor
    evidence.json("anchor-chain", [{"sink": str(s.path), "anchors": r.anchors, "problems": r.problems,
                                    "latest": r.latest} for s, r in reports])
    problems = [f"{s.path}: {p}" for s, r in reports for p in r.problems]
    assert not problems, "anchor chain: " + "; ".join(problems)
    assert all(r.anchors for _, r in reports), "a sink holds no anchor at all"


def test_newest_anchor_is_fresh(anchor, evidence):
    section, reports = anchor
    interval = float(section.get("interval_seconds", DEFAULT_INTERVAL))
    latest = next((r.latest for _, r in reports if r.latest), None)
    stale = anchoring.check_freshness(latest, 2 * interval)
    evidence.json("freshness", {"interval_seconds": interval, "newest": latest and latest["checkpoint"]["at"]})
    assert stale is None, stale


def test_database_is_consistent_with_the_newest_anchor(anchor, connect, evidence):
    _, reports = anchor
    latest = next((r.latest for _, r in reports if r.latest), None)
    if latest is None:
        pytest.fail("no valid anchor to compare the database with")
    problems = anchoring.check_database(connect("auditor"), latest)
    evidence.json("consistency", {"anchored": latest["checkpoint"], "problems": problems})
    assert not problems, "the database disagrees with the newest anchor: " + "; ".join(problems)


def test_anchors_carry_valid_rfc3161_timestamps(anchor, target, evidence):
    section, reports = anchor
    if not section.get("tsa_url"):
        pytest.skip("the target uses no time-stamping authority ([anchor].tsa_url): anchors carry only their own time")
    records = reports[0][0].read()
    problems = anchoring.check_timestamps(records, target.resolve(section["tsa_ca"]))
    evidence.json("timestamps", {"anchors": len(records), "problems": problems})
    # Anchors written before the TSA was configured are reported, not excused.
    assert not problems, "RFC 3161 timestamps: " + "; ".join(problems[:10])
