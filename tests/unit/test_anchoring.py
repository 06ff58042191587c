"""The anchor chain on its own: links, signatures, sequence, freshness; the file sink's
append-only attribute and the shipper's buffer when a sink is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.anchor_sinks import FileSink, Shipper
from ztm import anchoring

STATE = {"seq": 10, "head_hash": "a" * 64, "row_count": 10, "ddl_digest": "d" * 64}


def chain(key, n: int) -> list[dict]:
    records, previous = [], None
    for i in range(n):
        previous = anchoring.make_anchor({**STATE, "seq": 10 + i}, previous, key, "t")
        records.append(previous)
    return records


def test_a_good_chain_verifies():
    key = Ed25519PrivateKey.generate()
    report = anchoring.verify_anchor_chain(chain(key, 4), key.public_key())
    assert report.ok and report.anchors == 4 and report.latest["checkpoint"]["anchor_seq"] == 4


def test_removed_anchor_breaks_the_links():
    key = Ed25519PrivateKey.generate()
    records = chain(key, 4)
    del records[1]
    assert "prev_anchor does not link" in anchoring.verify_anchor_chain(records, key.public_key()).problems[0]


def test_altered_anchor_fails_its_signature():
    key = Ed25519PrivateKey.generate()
    records = chain(key, 3)
    records[2]["checkpoint"]["seq"] = 99
    assert "signature does not verify" in anchoring.verify_anchor_chain(records, key.public_key()).problems[0]


def test_freshness():
    key = Ed25519PrivateKey.generate()
    latest = chain(key, 1)[0]
    assert anchoring.check_freshness(latest, 120) is None
    latest["checkpoint"]["at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert "not running" in anchoring.check_freshness(latest, 120)
    assert anchoring.check_freshness(None, 120) == "no anchor has ever been shipped"


def test_file_sink_is_append_only_where_the_filesystem_allows(tmp_path):
    sink = FileSink(tmp_path / "anchors.jsonl")
    sink.ship({"a": 1})
    sink.ship({"a": 2})
    assert [r["a"] for r in sink.read()] == [1, 2]
    assert sink.note  # says whether chattr +a worked here
    if sink.append_only:
        import subprocess

        assert subprocess.run(["sh", "-c", f": > {sink.path}"], capture_output=True).returncode != 0
        subprocess.run(["chattr", "-a", str(sink.path)], check=True)


def test_a_sink_that_is_down_gets_the_anchors_later_and_the_others_once(tmp_path):
    down_dir = tmp_path / "down"
    healthy, late = FileSink(tmp_path / "ok.jsonl"), FileSink(down_dir / "anchors.jsonl")
    shipper = Shipper([healthy, late], tmp_path / "buffer.jsonl")
    down_dir.write_text("not a folder: this sink cannot be written")
    shipper.ship({"n": 1})
    assert shipper.failures and [r["n"] for r in healthy.read()] == [1]
    down_dir.unlink()
    import time

    time.sleep(1.1)  # past the first backoff
    shipper.ship({"n": 2})
    assert [r["n"] for r in late.read()] == [1, 2]  # nothing dropped
    assert [r["n"] for r in healthy.read()] == [1, 2]  # nothing twice
    import subprocess

    for path in (healthy.path, late.path):
        subprocess.run(["chattr", "-a", str(path)], capture_output=True)
