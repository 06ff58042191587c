"""ZTM-AUD-3: the off-host anchor of the audit chain is continuous, fresh and consistent.

The anchors in the write-once sink(s) must form one signed chain (each links to the one
before, signatures verify with the anchor public key, sequence numbers increase); between
two anchors the audit head may only move forward, no row may go missing and the audit DDL
and guard triggers may only change with a declared (reviewed) change; every sink must hold
every anchor older than one interval (a sink left behind is a gap); the newest must be
younger than the policy's number of anchor intervals (anchor.freshness_intervals: two in
zero-trust); and the database must agree with every anchor: the chain recomputes from
genesis through each anchored (seq, hash), no row behind the newest anchor was added or
removed, the head has not gone back, and the audit DDL and guard triggers are unchanged
since the newest anchor. Every anchor must name this target (another target's anchors signed
with the same key are refused), none may be dated before the one it follows nor more than a
bounded clock skew in the future, and an exact repeat (a re-delivery) counts once. Every
sink's storage must be write-once as the sink claims (a file sink or syslog journal
append-only, an S3 bucket with Object Lock), and every RFC 3161 token must verify, its
genTime close to the anchor's own time.
"""

from __future__ import annotations

import pytest

from ztm import anchoring
from ztm.anchoring import DEFAULT_INTERVAL
from ztm.anchoring import public_key as _public_key
from ztm.anchoring.sinks import read_sinks as _read_sinks
from ztm.anchoring.sinks import sink_for

pytestmark = pytest.mark.control("ZTM-AUD-3")


@pytest.fixture(scope="module")
def anchor(target):
    section = target.section("anchor")
    if not section.get("sinks") or not section.get("public_key"):
        pytest.skip("the target names no anchor sinks and public key ([anchor]): nothing to check off-host")
    sinks = [sink_for(s, target.resolve) for s in section["sinks"]]
    interval = float(section.get("interval_seconds", DEFAULT_INTERVAL))
    named, unreadable = _read_sinks(sinks)
    # The first sink must hold the whole chain; a sink added later may start mid-chain but
    # must agree with the first anchor for anchor.
    report = anchoring.verify_sinks(named, _public_key(target, section), grace_seconds=interval,
                                    target_name=target.name)
    report.problems[:0] = unreadable
    return section, interval, report, sinks


def test_anchor_chain_is_continuous_and_signed(anchor, evidence):
    _, _, report, _ = anchor
    evidence.json("anchor-chain", {"sinks": report.per_sink, "problems": report.problems, "notes": report.notes,
                                   "latest": report.latest})
    assert not report.problems, "anchor chain: " + "; ".join(report.problems[:10])
    assert all(s["anchors"] for s in report.per_sink), "a sink holds no anchor at all"


def test_newest_anchor_is_fresh(anchor, policy, evidence):
    _, interval, report, _ = anchor
    intervals = policy.anchor["freshness_intervals"]
    stale = anchoring.check_freshness(report.latest, intervals * interval)
    evidence.json("freshness", {"interval_seconds": interval, "max_age_intervals": intervals,
                                "newest": report.latest and report.latest["checkpoint"]["at"]})
    assert stale is None, stale


@pytest.mark.needs("login.auditor")
def test_database_is_consistent_with_every_anchor(anchor, target, connect, evidence):
    _, _, report, _ = anchor
    if not report.reference:
        pytest.fail("no valid anchor to compare the database with")
    problems = anchoring.check_database(connect("auditor"), report.reference, target.database)
    evidence.json("consistency", {"anchors": len(report.reference), "newest": report.latest["checkpoint"],
                                  "problems": problems})
    assert not problems, "the database disagrees with the anchors: " + "; ".join(problems)


def test_anchors_carry_valid_rfc3161_timestamps(anchor, target, evidence):
    section, _, report, _ = anchor
    if not section.get("tsa_url"):
        pytest.skip("the target uses no time-stamping authority ([anchor].tsa_url): anchors carry only their own time")
    problems, notes = anchoring.check_timestamps(report.reference, target.resolve(section["tsa_ca"]))
    evidence.json("timestamps", {"anchors": len(report.reference), "problems": problems, "notes": notes})
    # An anchor without a token is excused only when a later anchor's token covers its hash.
    assert not problems, "RFC 3161 timestamps: " + "; ".join(problems[:10])


def test_sinks_are_write_once(anchor, evidence):
    """What the sinks claim is checked on the storage: a file sink (or syslog journal) that
    anyone who can write it may rewrite is no off-host record."""
    _, _, _, sinks = anchor
    found = [(sink.name, *sink.write_once()) for sink in sinks]
    evidence.json("write-once", [{"sink": name, "write_once": ok, "detail": detail} for name, ok, detail in found])
    problems = [f"{name}: {detail}" for name, ok, detail in found if not ok]
    assert not problems, "anchor sinks not write-once: " + "; ".join(problems)
