"""Exactly-once, crash-safe anchoring on the lab (instance of ZTM_LAB_INSTANCE), with real
processes: the shipper SIGKILLed between shipping an anchor and saving its buffer (once after
the file sink got it, once after the syslog collector got it), its buffer corrupted, the
collector taken down and brought up again. Afterwards every sink holds every anchor once as
the verifier counts (the syslog journal really holds a repeat), no anchor is lost, and
ZTM-AUD-3 passes. Then the ways ZTM-AUD-3 exists to catch the new rules: a sink that is not
append-only, another target's anchors under the same key, a future-dated anchor."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w

from provision import netns
from provision.lab import COLLECTOR_NAME
from provision.pki import issue_collector
from tests.control_runner import run_control
from tests.lab.test_anchor_sensitivity import _free_port, once, target_copy
from ztm import anchoring
from ztm.anchoring.sinks import FileSink, SyslogSink
from ztm.keys import load_signing_key

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 180

# 'ztm anchor once' with one sink's ship followed by SIGKILL of the process itself: the
# delivery happened, the buffer was not saved (the moment a crash or failed fsync hits).
KILL_AFTER_SHIP = """
import os, signal, sys
from ztm.anchoring import sinks
kind = getattr(sinks, sys.argv[1])
original = kind.ship
def ship(self, record):
    original(self, record)
    os.kill(os.getpid(), signal.SIGKILL)
kind.ship = ship
from ztm.cli import main
sys.exit(main(["anchor", "once", "--target", sys.argv[2]]))
"""


def killed_after_ship(kind: str, target: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILL_AFTER_SHIP, kind, str(target)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -9, f"not killed in {kind}.ship: {done.returncode} {done.stdout} {done.stderr}"


class Collector:
    """A scratch syslog collector on loopback with the lab's collector certificate."""

    def __init__(self, lab, port: int, journal: Path) -> None:
        self.lab, self.port, self.journal, self.proc = lab, port, journal, None

    def up(self) -> None:
        cert, key = issue_collector(self.lab.pki, name=COLLECTOR_NAME, address=netns.LOG.address)
        self.proc = subprocess.Popen([sys.executable, "-m", "provision.syslog_collector", "--listen",
                                      f"127.0.0.1:{self.port}", "--cert", str(cert), "--key", str(key), "--ca",
                                      str(self.lab.pki.ca_cert), "--journal", str(self.journal)],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        said = [self.proc.stdout.readline(), self.proc.stdout.readline()]  # blocks until bound (or died)
        assert said[1].startswith("listening on"), f"the scratch collector did not start: {said}"

    def down(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None


def seqs(records: list[dict]) -> list[int]:
    return [r["checkpoint"]["anchor_seq"] for r in records]


def test_killed_between_ship_and_save_corrupt_buffer_and_a_sink_down_lose_nothing_and_break_nothing(lab, tmp_path):
    port, journal = _free_port(), tmp_path / "journal.jsonl"
    syslog = {"kind": "syslog", "address": f"127.0.0.1:{port}", "server_name": COLLECTOR_NAME,
              "ca": str(lab.pki.ca_cert), "cert": str(lab.pki.client("auditor", "pem")),
              "key": str(lab.pki.client("auditor", "key")), "journal": str(journal)}
    file_sink = tmp_path / "anchors.jsonl"
    # A long interval: this run judges delivery, not freshness or the in-flight grace.
    target = target_copy(lab, tmp_path, interval_seconds=3600,
                         sinks=[{"kind": "file", "path": str(file_sink)}, syslog])
    buffer = Path(str(file_sink) + ".buffer")
    collector = Collector(lab, port, journal)
    collector.up()
    try:
        assert once(target).returncode == 0  # anchor 1 everywhere
        killed_after_ship("FileSink", target)  # anchor 2: in the file sink, not in syslog, buffers unsaved
        killed_after_ship("SyslogSink", target)  # anchor 2 (file: repeat skipped) and 3 to syslog, unsaved
        with open(Path(f"{buffer}.1"), "ab") as handle:  # a torn write in the syslog sink's buffer
            handle.write(b'{"checkpoint": {"anchor_seq": 3, "at": "2026-')
        collector.down()
        down = once(target)  # anchor 4: the collector is down
        assert down.returncode == 1 and f"FAILED: sink syslog://127.0.0.1:{port}" in down.stdout, down.stdout
        assert "quarantined" in down.stderr and "Traceback" not in down.stderr, down.stderr
        assert list(tmp_path.glob("anchors.jsonl.buffer.1.corrupt-*")), "the corrupt buffer was not kept aside"
        collector.up()
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:  # retried after the backoff: every buffered anchor delivered
            done = once(target)
            if done.returncode == 0:
                break
            time.sleep(1)
        assert done.returncode == 0, done.stdout + done.stderr
        run = run_control(target, "ZTM-AUD-3")
    finally:
        collector.down()
        subprocess.run(["chattr", "-a", str(journal), str(file_sink)], capture_output=True)
    in_file = FileSink(file_sink).read()
    in_syslog = SyslogSink(syslog["address"], Path(), "", Path(), Path(), journal).read()
    newest = in_file[-1]["checkpoint"]["anchor_seq"]
    assert seqs(in_file) == list(range(1, newest + 1))  # the file sink recognised the repeat: none twice
    assert sorted(set(seqs(in_syslog))) == list(range(1, newest + 1))  # none lost
    assert len(in_syslog) > len(set(seqs(in_syslog))), "the syslog journal never received a repeat to recognise"
    run.assert_all_passed()


def test_aud3_fails_naming_a_sink_that_is_not_append_only(lab, tmp_path):
    target = target_copy(lab, tmp_path, interval_seconds=3600)
    assert once(target).returncode == 0
    subprocess.run(["chattr", "-a", str(tmp_path / "anchors.jsonl")], check=True)
    run = run_control(target, "ZTM-AUD-3")
    run.assert_failed("test_sinks_are_write_once", str(tmp_path / "anchors.jsonl"), "is not append-only")


def test_aud3_refuses_another_targets_anchors_signed_with_the_same_key(lab, tmp_path):
    doc = tomllib.loads(lab.target_file.read_text())
    doc["target"]["name"] = "another-target"
    other = tmp_path / "other.toml"
    other.write_text(tomli_w.dumps(doc))  # the lab's own sinks and key, another target's name
    run = run_control(other, "ZTM-AUD-3")
    run.assert_failed("test_anchor_chain_is_continuous_and_signed", f"belongs to target {lab_name(lab)!r}",
                      "not 'another-target'")


def lab_name(lab) -> str:
    return tomllib.loads(lab.target_file.read_text())["target"]["name"]


def test_aud3_fails_naming_a_future_dated_anchor(lab, tmp_path):
    """An anchor signed with the lab's key (as a shipper with its clock far ahead would) is
    refused by the verifier, named, although it would look fresh."""
    target = target_copy(lab, tmp_path, interval_seconds=3600, drop=("tsa_url",))
    assert once(target).returncode == 0
    sink = FileSink(tmp_path / "anchors.jsonl")
    (first,) = sink.read()
    key = load_signing_key(Path(tomllib.loads(target.read_text())["anchor"]["signing_key"]), "anchor signing key")
    state = {k: first["checkpoint"][k] for k in ("events", "lanes", "heads_digest", "ddl_digest", "definitions")}
    future = anchoring.make_anchor(state, first, key, first["checkpoint"]["target"],
                                   now=datetime.now(UTC) + timedelta(days=1))
    sink.ship(future)
    run = run_control(target, "ZTM-AUD-3")
    message = run.assert_failed("test_anchor_chain_is_continuous_and_signed", "anchor 2 is dated",
                                "in the future")
    assert "look fresh" in message
