"""The anchor chain on its own: links, signatures, sequence, what changed between two
anchors, sinks left behind, freshness; the database rows (or an export) against every
anchor; the file sink's append-only attribute, the shipper's buffer when a sink is down,
and `ztm anchor run` outliving a failing round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.anchor_shipper import Shipper
from ztm import anchoring
from ztm.anchoring.sinks import FileSink
from ztm.audit_chain import GENESIS, LANES, heads_digest, link_hash

DDL = "d" * 64
ROOT = Path(__file__).resolve().parents[2]


def rows(n: int, tag: str = "", lane: int = 0) -> list[tuple[int, int, str, str, str]]:
    """A valid lane of n events (as the triggers chain them)."""
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        payload = f'{{"lane": {lane}, "seq": {seq}, ' + json.dumps({"op": "INSERT", "tag": tag})[1:]
        curr = link_hash(prev, payload)
        out.append((lane, seq, payload, prev, curr))
        prev = curr
    return out


OTHER = rows(2, "another tenant", lane=9)  # a second lane with events, the same in every state


def trail(lane0):
    """Lane 0 as given, then lane 9 (the trail's (lane, seq) order)."""
    return list(lane0) + OTHER


def state(chain_rows, seq: int, *, head_hash: str | None = None, row_count: int | None = None, **changes) -> dict:
    """The anchored state: lane 0 at ``seq`` of ``chain_rows``, lane 9 at OTHER's head, the rest at genesis."""
    heads = {lane: (0, GENESIS) for lane in range(LANES)}
    heads[0] = (seq, head_hash or (chain_rows[seq - 1][4] if seq else GENESIS))
    heads[9] = (2, OTHER[-1][4])
    counts = {0: seq if row_count is None else row_count, 9: 2}
    lanes = {str(lane): {"seq": s, "head_hash": h, "row_count": counts.get(lane, 0)} for lane, (s, h) in heads.items()}
    return {"events": seq + 2, "lanes": lanes, "heads_digest": heads_digest(heads), "ddl_digest": DDL, **changes}


def anchors(key, states: list[dict], ddl_change: dict[int, str] | None = None) -> list[dict]:
    records, previous = [], None
    for i, s in enumerate(states, 1):
        previous = anchoring.make_anchor(s, previous, key, "t", (ddl_change or {}).get(i))
        records.append(previous)
    return records


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def test_a_good_chain_verifies(key):
    r = rows(12)
    report = anchoring.verify_anchor_chain(anchors(key, [state(r, s) for s in (3, 7, 7, 12)]), key.public_key())
    assert report.ok, report.problems
    assert report.anchors == 4 and report.latest["checkpoint"]["anchor_seq"] == 4


def test_removed_anchor_breaks_the_links(key):
    r = rows(9)
    records = anchors(key, [state(r, s) for s in (3, 5, 7, 9)])
    del records[1]
    assert "prev_anchor does not link" in anchoring.verify_anchor_chain(records, key.public_key()).problems[0]


def test_altered_anchor_fails_its_signature(key):
    r = rows(9)
    records = anchors(key, [state(r, s) for s in (3, 5, 9)])
    records[2]["checkpoint"]["lanes"]["0"]["seq"] = 99
    assert "signature does not verify" in anchoring.verify_anchor_chain(records, key.public_key()).problems[0]


def test_an_anchor_signed_with_another_key_fails(key):
    r = rows(9)
    records = anchors(key, [state(r, 3)])
    records.append(anchoring.make_anchor(state(r, 9), records[-1], Ed25519PrivateKey.generate(), "t"))
    problems = anchoring.verify_anchor_chain(records, key.public_key()).problems
    assert problems and "anchor 2" in problems[0] and "signature does not verify" in problems[0]


def test_seq_going_back_between_anchors_is_flagged(key):
    r = rows(9)
    problems = anchoring.verify_anchor_chain(anchors(key, [state(r, 9), state(r, 6)]), key.public_key()).problems
    assert any("went backwards" in p and "(9 -> 6)" in p and "between anchor 1" in p for p in problems), problems


def test_rows_deleted_behind_the_head_between_anchors_are_flagged(key):
    r = rows(9)
    records = anchors(key, [state(r, 5), state(r, 9, row_count=7)])
    problems = anchoring.verify_anchor_chain(records, key.public_key()).problems
    assert any("rows of lane 0 deleted between anchor 1" in p and "counted 7" in p for p in problems), problems


def test_a_rewritten_head_row_between_anchors_is_flagged(key):
    r = rows(5)
    problems = anchoring.verify_anchor_chain(anchors(key, [state(r, 5), state(r, 5, head_hash="b" * 64)]),
                                             key.public_key()).problems
    assert any("changed its hash" in p for p in problems), problems


def test_an_undeclared_ddl_change_between_anchors_is_flagged_and_a_declared_one_is_noted(key):
    r = rows(5)
    states = [state(r, 3), state(r, 5, ddl_digest="e" * 64)]
    undeclared = anchoring.verify_anchor_chain(anchors(key, states), key.public_key())
    assert any("changed between anchor 1" in p and "no declared change" in p for p in undeclared.problems)
    declared = anchoring.verify_anchor_chain(anchors(key, states, {2: "CHG-42 index added, reviewed by A. Auditor"}),
                                             key.public_key())
    assert declared.ok, declared.problems
    assert declared.notes == ["anchor 2 declares a reviewed DDL change: CHG-42 index added, reviewed by A. Auditor"]


def test_an_undeclared_change_names_the_objects_added_removed_and_changed(key):
    r = rows(5)
    before = {"trigger:a": "1" * 64, "table:accounts": "2" * 64, "view:v": "3" * 64}
    after = {"trigger:a": "1" * 64, "table:accounts": "9" * 64, "procedure:p": "4" * 64}
    states = [state(r, 3, definitions=before, ddl_digest=anchoring.digest_of(before)),
              state(r, 5, definitions=after, ddl_digest=anchoring.digest_of(after))]
    (problem,) = anchoring.verify_anchor_chain(anchors(key, states), key.public_key()).problems
    assert "added procedure:p; removed view:v; changed table:accounts" in problem, problem


def test_a_declared_change_cannot_be_added_to_a_shipped_anchor(key):
    r = rows(5)
    records = anchors(key, [state(r, 3), state(r, 5, ddl_digest="e" * 64)])
    records[1]["checkpoint"]["ddl_change"] = "added afterwards"
    assert "signature does not verify" in anchoring.verify_anchor_chain(records, key.public_key()).problems[0]


def test_a_sink_left_behind_shows_as_a_gap(key):
    r = rows(9)
    records = anchors(key, [state(r, s) for s in (3, 5, 9)])
    now = anchoring._at(records[-1])
    report = anchoring.verify_sinks([("file", records), ("syslog", records[:1])], key.public_key(),
                                    grace_seconds=60, now=now + timedelta(seconds=61))
    assert any(p.startswith("syslog: gap: anchors 2..3 were never delivered") for p in report.problems), report.problems
    young = anchoring.verify_sinks([("file", records), ("syslog", records[:1])], key.public_key(),
                                   grace_seconds=3600, now=now + timedelta(seconds=61))
    assert young.problems == [] and young.notes == ["syslog: anchors 2..3 still in flight"]


def test_the_primary_left_behind_also_shows_and_the_reference_is_the_whole_chain(key):
    r = rows(9)
    records = anchors(key, [state(r, s) for s in (3, 5, 9)])
    report = anchoring.verify_sinks([("file", records[:2]), ("s3", records)], key.public_key(), grace_seconds=60,
                                    now=anchoring._at(records[-1]) + timedelta(hours=1))
    assert report.latest == records[-1] and len(report.reference) == 3
    assert any(p.startswith("file: gap: anchors 3..3") for p in report.problems), report.problems


def test_sinks_that_disagree_are_flagged(key):
    r = rows(9)
    records = anchors(key, [state(r, s) for s in (3, 5)])
    other = anchors(key, [state(r, s) for s in (3, 9)])
    report = anchoring.verify_sinks([("file", records), ("syslog", other)], key.public_key(), grace_seconds=60)
    assert any("differs from the primary" in p for p in report.problems), report.problems


def test_freshness(key):
    latest = anchors(key, [state(rows(1), 1)])[0]
    now = anchoring._at(latest)
    assert anchoring.check_freshness(latest, 120, now=now + timedelta(seconds=119)) is None
    assert "not running" in anchoring.check_freshness(latest, 120, now=now + timedelta(seconds=121))
    assert anchoring.check_freshness(None, 120) == "no anchor has ever been shipped"


def test_the_rows_pass_through_every_anchor(key):
    r = rows(12)
    problems, ends = anchoring.check_rows(trail(r), anchors(key, [state(r, s) for s in (3, 7, 12)]))
    assert problems == [] and ends[0] == (12, r[-1][4]) and ends[9] == (2, OTHER[-1][4]) and ends[5] == (0, GENESIS)


def test_a_lane_rewound_behind_an_anchor_is_caught(key):
    """Lane 0 fine; lane 9 lost its newest event after an anchor recorded it."""
    r = rows(6)
    problems, _ = anchoring.check_rows(r + OTHER[:1], anchors(key, [state(r, 6)]))
    assert len(problems) == 1 and "lane 9 of the audit trail ends at seq 1, behind anchor 1" in problems[0], problems


def test_a_lane_dropped_from_an_anchor_or_a_single_chain_anchor_is_refused(key):
    r = rows(6)
    dropped = state(r, 6)
    del dropped["lanes"]["9"]
    problems = anchoring.verify_anchor_chain(anchors(key, [state(r, 3), dropped]), key.public_key()).problems
    assert any("records 63 lanes, not the trail's 64: a lane was dropped" in p for p in problems), problems
    unbound = state(r, 6, heads_digest="0" * 64)
    problems = anchoring.verify_anchor_chain(anchors(key, [unbound]), key.public_key()).problems
    assert problems == ["anchor 1: heads_digest does not bind its lane heads"], problems
    old = anchoring.make_anchor({"seq": 6, "head_hash": r[-1][4], "row_count": 6, "ddl_digest": DDL}, None, key, "t")
    old["checkpoint"]["v"] = 1
    old["sig"] = __import__("base64").b64encode(key.sign(anchoring.canonical(old["checkpoint"]))).decode()
    (problem,) = anchoring.verify_anchor_chain([old], key.public_key()).problems
    assert "single-chain format (v1" in problem, problem


def test_one_lane_going_back_between_anchors_is_named(key):
    r = rows(6)
    later = state(r, 6)
    later["lanes"]["9"] = {"seq": 1, "head_hash": OTHER[0][4], "row_count": 1}
    later["heads_digest"] = heads_digest(anchoring.lane_heads(later))
    problems = anchoring.verify_anchor_chain(anchors(key, [state(r, 3), later]), key.public_key()).problems
    assert problems == [next(p for p in problems if "lane 9 went backwards" in p and "(2 -> 1)" in p)], problems


def test_a_rewritten_and_rechained_row_is_caught_at_the_oldest_anchor_behind_it(key):
    r = rows(12)
    records = anchors(key, [state(r, s) for s in (3, 7, 12)])
    forged = _rechain(r[:1] + rows(12, tag="rewritten")[1:])  # rows from 2 rewritten, every hash recomputed
    problems, _ = anchoring.check_rows(trail(forged), records)
    assert len(problems) == 1 and "lane 0 of the audit trail does not pass through anchor 1" in problems[0], problems


def test_a_rollback_behind_an_anchor_then_new_writes_is_caught(key):
    r = rows(10)
    records = anchors(key, [state(r, s) for s in (4, 8)])
    rolled_back = _rechain(r[:5] + rows(12, tag="after the restore")[5:])  # restored at seq 5, then 7 new events
    problems, ends = anchoring.check_rows(trail(rolled_back), records)
    assert ends[0][0] == 12 and len(problems) == 1, problems
    assert "does not pass through anchor 2" in problems[0] and "rolled back" in problems[0]


def test_truncated_newest_rows_are_caught(key):
    r = rows(10)
    problems, _ = anchoring.check_rows(trail(r[:7]), anchors(key, [state(r, s) for s in (4, 10)]))
    assert problems and "lane 0 of the audit trail ends at seq 7, behind anchor 2" in problems[0]


def _rechain(chain_rows):
    out, prev = [], GENESIS
    for lane, seq, payload, _, _ in chain_rows:
        curr = link_hash(prev, payload)
        out.append((lane, seq, payload, prev, curr))
        prev = curr
    return out


def write_export(path: Path, chain_rows, head_seq: int | None) -> Path:
    """An export of lane 0 as given (its trailer's head at ``head_seq``) and lane 9."""
    chain_rows = trail(chain_rows)
    lines = [json.dumps({"lane": la, "seq": s, "payload": p, "prev_hash": ph, "curr_hash": ch})
             for la, s, p, ph, ch in chain_rows]
    if head_seq is not None:
        heads = {lane: (0, GENESIS) for lane in range(LANES)}
        heads[0] = (head_seq, chain_rows[head_seq - 1][4] if head_seq else GENESIS)
        heads[9] = (2, OTHER[-1][4])
        lines.append(json.dumps({"heads": {str(la): {"seq": s, "head_hash": h} for la, (s, h) in heads.items()},
                                 "heads_digest": heads_digest(heads), "lanes": LANES, "rows": len(chain_rows)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_export_matches_the_anchors_up_to_its_head(tmp_path, key):
    r = rows(10)
    records = anchors(key, [state(r, s) for s in (4, 8, 10)])
    problems, notes = anchoring.check_export(write_export(tmp_path / "x.jsonl", r[:9], 9), records)
    assert problems == [] and notes == ["export of 11 events: passes through anchors 1..2; anchors 3..3 are newer "
                                        "than the export"]


def test_an_export_cut_short_or_with_rows_removed_is_caught(tmp_path, key):
    r = rows(10)
    records = anchors(key, [state(r, s) for s in (4, 8)])
    no_trailer, _ = anchoring.check_export(write_export(tmp_path / "a.jsonl", r, None), records)
    assert "has no head trailer" in no_trailer[0]
    path = write_export(tmp_path / "b.jsonl", r, 10)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:6] + lines[-3:]) + "\n")  # lane 0's rows 7..10 removed, lane 9 and trailer kept
    removed, _ = anchoring.check_export(path, records)
    assert any("behind anchor 2" in p for p in removed) and any("rows of lanes [0] do not end where the head trailer"
                                                               in p for p in removed), removed


def test_a_single_chain_export_is_refused_with_one_line(tmp_path, key):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"seq": 1, "payload": "{}", "prev_hash": GENESIS, "curr_hash": link_hash(GENESIS, "{}")})
                    + "\n" + json.dumps({"head": {"seq": 1, "head_hash": link_hash(GENESIS, "{}")}, "rows": 1}) + "\n")
    with pytest.raises(anchoring.UserError, match="single-chain audit export"):
        anchoring.check_export(path, [])


def test_missing_timestamps_on_the_newest_anchors_are_a_problem(key):
    r = rows(5)
    records = anchors(key, [state(r, s) for s in (3, 5)])
    records[1]["tst_missing"] = "the time-stamping authority http://tsa/ did not answer"
    problems, notes = anchoring.check_timestamps(records, Path("/nonexistent-ca.pem"))
    assert notes == [] and len(problems) == 2
    assert problems[1] == ("anchor 2 carries no RFC 3161 timestamp (the TSA was unavailable: the time-stamping "
                           "authority http://tsa/ did not answer), nor does any later anchor")


def test_file_sink_is_append_only_where_the_filesystem_allows(tmp_path):
    sink = FileSink(tmp_path / "anchors.jsonl")
    sink.ship({"a": 1, "checkpoint": {"anchor_seq": 1}})
    sink.ship({"a": 2, "checkpoint": {"anchor_seq": 2}})
    try:
        assert [r["a"] for r in sink.read()] == [1, 2]
        assert sink.write_once()[0] is sink.append_only
        assert sink.note  # says whether chattr +a worked here
        if sink.append_only:
            assert subprocess.run(["sh", "-c", f": > {sink.path}"], capture_output=True).returncode != 0
            assert [r["a"] for r in sink.read()] == [1, 2]
        else:
            assert "not supported here" in sink.note
    finally:
        subprocess.run(["chattr", "-a", str(sink.path)], capture_output=True)


def _numbered(n: int) -> dict:
    return {"checkpoint": {"anchor_seq": n}, "n": n}


class BrokenSink:
    """A sink whose service answers with an unexpected error (not an OSError)."""

    path = Path("broken://sink")
    name = "broken://sink"

    def ship(self, record):
        raise RuntimeError("service answered 500")


def test_a_sink_that_is_down_gets_the_anchors_later_and_the_others_once(tmp_path):
    clock = [1000.0]  # the backoff's clock, moved by the test instead of sleeping
    down_dir = tmp_path / "down"
    healthy, late = FileSink(tmp_path / "ok.jsonl"), FileSink(down_dir / "anchors.jsonl")
    shipper = Shipper([healthy, late, BrokenSink()], tmp_path / "buffer.jsonl", clock=lambda: clock[0])
    down_dir.write_text("not a folder: this sink cannot be written")
    try:
        shipper.ship(_numbered(1))
        assert len(shipper.failures) == 2 and str(late.path) in shipper.failures[0]
        assert "RuntimeError: service answered 500" in shipper.failures[1]
        shipper.ship(_numbered(2))  # still inside the backoff: buffered without trying
        assert "in backoff" in shipper.failures[0] and "2 anchor(s) buffered" in shipper.failures[0]
        down_dir.unlink()
        clock[0] += 1.5  # past the first backoff (1 s)
        shipper.ship(_numbered(3))
        assert [r["checkpoint"]["anchor_seq"] for r in late.read()] == [1, 2, 3]  # nothing dropped, in order
        assert [r["checkpoint"]["anchor_seq"] for r in healthy.read()] == [1, 2, 3]  # nothing twice
        assert len(shipper.failures) == 1 and "3 anchor(s) buffered" in shipper.failures[0]
        assert shipper.pending() == 3  # the broken sink's anchors wait in its buffer
    finally:
        for path in (healthy.path, late.path):
            subprocess.run(["chattr", "-a", str(path)], capture_output=True)


def test_anchor_run_survives_an_exception_in_a_round(tmp_path):
    """Fault injection: the auditor connection raises an unexpected RuntimeError every round;
    the process logs one line per round and keeps going until SIGTERM."""
    key = tmp_path / "anchor.key"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    from tests.unit.test_target import MINIMAL

    target = tmp_path / "target.toml"
    target.write_text(MINIMAL.replace("192.0.2.10", "127.0.0.1") + textwrap.dedent(f"""
        [anchor]
        signing_key = "{key}"
        interval_seconds = 4
        sinks = [{{kind = "file", path = "{tmp_path / 'anchors.jsonl'}"}}]
        """))
    log = tmp_path / "run.log"
    script = ("import sys, provision.anchor_cli as a\n"
              "def fault(target): raise RuntimeError('injected fault')\n"
              "a._auditor = fault\n"
              "from ztm.cli import main\n"
              "sys.exit(main(['anchor', 'run', '--target', sys.argv[1]]))\n")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", script, str(target)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and log.read_text().count("round failed") < 2 and proc.poll() is None:
            time.sleep(0.2)  # polling the log for the exact condition
        lines = log.read_text().splitlines()
        assert proc.poll() is None, f"anchor run exited: {lines}"
        assert sum("round failed (RuntimeError): injected fault" in line for line in lines) >= 2, lines
        assert not any("Traceback" in line for line in lines), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_the_installer_writes_a_service_and_a_timer_that_may_write_where_the_anchor_writes(tmp_path):
    from tests.unit.test_target import MINIMAL

    sink_dir = tmp_path / "var" / "anchors"
    target = tmp_path / "etc" / "target.toml"
    target.parent.mkdir()
    target.write_text(MINIMAL + textwrap.dedent(f"""
        [anchor]
        public_key = "anchor.pub.pem"
        buffer = "{tmp_path / 'spool' / 'anchors.buffer'}"
        sinks = [{{kind = "file", path = "{sink_dir / 'anchors.jsonl'}"}}]
        """))
    out = tmp_path / "units"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "provision", "anchor-units", "--target", str(target),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    service, timer = (out / "ztm-anchor.service").read_text(), (out / "ztm-anchor-once.timer").read_text()
    assert f"anchor run --target {target}" in service and "Restart=always" in service
    assert f"ReadWritePaths={tmp_path / 'etc'} {tmp_path / 'spool'} {sink_dir}" in service
    assert "OnUnitActiveSec=60" in timer
    assert "${" not in service + timer + (out / "ztm-anchor-once.service").read_text()
    # The file sink is made append-only by a privileged start step (the service cannot: User=, NoNewPrivileges).
    sink = sink_dir / "anchors.jsonl"
    for unit in (service, (out / "ztm-anchor-once.service").read_text()):
        assert f"ExecStartPre=+/bin/sh -c 'test -e {sink} || install -o " in unit and f"chattr +a {sink}'" in unit
