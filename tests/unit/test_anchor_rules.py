"""Each anchor verifier rule added for exactly-once, crash-safe anchoring, on hand-made
anchors: exact repeats count once, a fork under one number is named, time only goes forward
and not into the future, another target's anchors are refused, the signer refuses an
earlier time or another target's chain; the shipper writes ahead and atomically, contains a
corrupt buffer, and a file sink recognises a re-delivered anchor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.anchor_shipper import Shipper, load_records
from ztm import anchoring
from ztm.anchoring.sinks import FileSink
from ztm.errors import UserError

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def chain(key, times: list[datetime], target: str = "t") -> list[dict]:
    records, previous = [], None
    for n, at in enumerate(times, 1):
        state = anchoring.make_state({0: (n, f"{n:064x}")}, "d" * 64, counts={0: n})
        previous = anchoring.make_anchor(state, previous, key, target, now=at)
        records.append(previous)
    return records


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def times(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=i) for i in range(n)]


def test_an_exact_repeat_counts_once_with_a_note(key):
    records = chain(key, times(3))
    report = anchoring.verify_anchor_chain([*records[:2], records[1], records[2]], key.public_key(), now=T0)
    assert report.ok and report.anchors == 3, report.problems
    assert report.notes == ["anchor(s) 2 delivered more than once (a re-delivery after an interrupted shipment): "
                            "counted once"]
    sinks = anchoring.verify_sinks([("file", records), ("syslog", [records[0], records[0], *records[1:]])],
                                   key.public_key(), grace_seconds=60, now=T0 + timedelta(minutes=3))
    assert sinks.problems == [] and "syslog: anchor(s) 1 delivered more than once" in sinks.notes[0]


def test_two_different_anchors_under_one_number_are_a_fork(key):
    records = chain(key, times(2))
    other = anchoring.make_anchor(anchoring.make_state({0: (9, "f" * 64)}, "d" * 64, counts={0: 9}),
                                  records[0], key, "t", now=T0 + timedelta(minutes=1))
    (problem,) = anchoring.verify_anchor_chain([*records, other], key.public_key(), now=T0).problems
    assert "anchor_seq 2 appears twice with different content" in problem


def test_anchor_time_going_backwards_is_named(key):
    records = chain(key, [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=5)])
    assert anchoring.verify_anchor_chain(records, key.public_key(), now=T0).ok  # equal times are allowed
    back = chain(key, [T0])
    forged_state = anchoring.make_state({0: (2, "2" * 64)}, "d" * 64, counts={0: 2})
    checkpoint = {**anchoring.make_anchor(forged_state, back[0], key, "t", now=T0)["checkpoint"],
                  "at": "2026-12-01T11:00:00Z"}  # signed by a shipper without the clock guard
    back.append({"checkpoint": checkpoint, "key_id": "x", "sig": _sign(key, checkpoint)})
    (problem,) = anchoring.verify_anchor_chain(back, key.public_key(), now=T0).problems
    assert "anchor time went backwards between anchor 1" in problem and "anchor 2 is dated before anchor 1" in problem


def test_a_future_dated_anchor_is_named_beyond_the_skew(key):
    records = chain(key, [T0, T0 + timedelta(seconds=anchoring.MAX_SKEW + 60)])
    (problem,) = anchoring.verify_anchor_chain(records, key.public_key(), now=T0).problems
    assert problem.startswith("anchor 2 is dated 2026-12-01T12:06:00Z, 360 s in the future"), problem
    near = chain(key, [T0, T0 + timedelta(seconds=anchoring.MAX_SKEW - 10)])
    assert anchoring.verify_anchor_chain(near, key.public_key(), now=T0).ok


def test_another_targets_anchor_with_the_same_key_is_refused_naming_it(key):
    records = chain(key, times(2), target="other-db")
    (problem,) = anchoring.verify_anchor_chain(records, key.public_key(), target_name="t", now=T0).problems
    assert problem == ("anchor 1 belongs to target 'other-db', not 't': another target's anchor signed with the "
                       "same key")
    sinks = anchoring.verify_sinks([("file", records)], key.public_key(), grace_seconds=60, now=T0,
                                   target_name="t")
    assert any("belongs to target 'other-db'" in p for p in sinks.problems)


def test_the_signer_never_signs_an_earlier_time_nor_links_to_another_target(key):
    (first,) = chain(key, [T0])
    state = anchoring.make_state({0: (2, "2" * 64)}, "d" * 64, counts={0: 2})
    with pytest.raises(UserError, match="behind the previous anchor's time"):
        anchoring.make_anchor(state, first, key, "t", now=T0 - timedelta(seconds=1))
    with pytest.raises(UserError, match="belongs to target 't', not 'u'"):
        anchoring.make_anchor(state, first, key, "u", now=T0)


def _sign(key, checkpoint) -> str:
    import base64

    return base64.b64encode(key.sign(anchoring.canonical(checkpoint))).decode()


class CrashingSink(FileSink):
    """A file sink whose process 'dies' right after the delivery, before the buffer is saved."""

    def ship(self, record):
        super().ship(record)
        raise SystemExit("killed between ship and save")


def test_a_crash_between_ship_and_save_redelivers_once_and_loses_nothing(tmp_path, key):
    records = chain(key, times(2))
    primary, second = FileSink(tmp_path / "a.jsonl"), FileSink(tmp_path / "b.jsonl")
    crashing = Shipper([CrashingSink(primary.path), second], tmp_path / "buf")
    with pytest.raises(SystemExit):
        crashing.ship(records[0])
    assert len(load_records(tmp_path / "buf.1")) == 1  # written ahead: the second sink's copy is safe
    shipper = Shipper([primary, second], tmp_path / "buf")
    shipper.ship(records[1])
    assert shipper.failures == [] and shipper.pending() == 0
    assert primary.read() == records and second.read() == records  # the repeat was recognised, not appended
    report = anchoring.verify_sinks([("a", primary.read()), ("b", second.read())], key.public_key(),
                                    grace_seconds=60, now=T0 + timedelta(minutes=2))
    assert report.problems == []


def test_a_file_sink_refuses_a_different_anchor_under_a_held_number(tmp_path, key):
    records = chain(key, times(2))
    sink = FileSink(tmp_path / "a.jsonl")
    sink.ship(records[0])
    sink.ship(records[0])
    forked = {**records[1], "checkpoint": {**records[1]["checkpoint"], "anchor_seq": 1}}
    with pytest.raises(UserError, match="already holds a different anchor 1"):
        sink.ship(forked)
    assert sink.read() == records[:1]


def test_a_corrupt_buffer_is_quarantined_and_its_readable_anchors_kept(tmp_path, key, caplog):
    records = chain(key, times(2))
    buffer = tmp_path / "buf.0"
    buffer.write_text(json.dumps(records[0]) + "\n" + json.dumps(records[1])[:40] + "\n[1, 2]\n")
    kept = load_records(buffer)
    assert kept == records[:1]
    (aside,) = tmp_path.glob("buf.0.corrupt-*")
    assert aside.read_text().count("\n") == 3 and oct(aside.stat().st_mode & 0o777) == "0o600"
    assert load_records(buffer) == records[:1]  # rewritten clean: no second quarantine
    assert "2 unreadable line(s): quarantined" in caplog.text
    sink = FileSink(tmp_path / "s.jsonl")
    shipper = Shipper([sink], tmp_path / "buf")
    buffer.write_bytes(b"\x00\xff{not json")
    shipper.ship(records[0])
    assert sink.read() == records[:1] and shipper.pending() == 0


def test_buffers_are_replaced_atomically_with_private_files(tmp_path, key):
    (record,) = chain(key, [T0])
    shipper = Shipper([BrokenOnce()], tmp_path / "buf")
    shipper.ship(record)
    assert oct((tmp_path / "buf.0").stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


class BrokenOnce:
    name = "broken"

    def ship(self, record):
        raise OSError("sink down")
