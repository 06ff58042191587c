"""ZTM-AUD-3 fails, and says why, when the lab is broken the ways the anchor exists to catch:
the newest audit rows deleted by the admin (guards dropped and restored), rows deleted or
the DDL changed between two anchors, a database rolled back behind an anchor, a rewritten
row, the anchor process stopped for more than two intervals, an anchor signed with the wrong
key, a sink that is down (a gap), a TSA that is down (an anchor without a timestamp). Each
test restores the lab. Tests that tamper with the database stop the lab's own anchor process
first, so that the lab's write-once chain never records the tampering; tests that need
anchors of their own write them to a chain in a scratch folder (a copy of the lab target
with other sinks, the same key, database and TSA)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision import netns, schema
from provision.lab import COLLECTOR_NAME, anchor_down, anchor_up
from provision.netns import ACCOUNT_HOST
from provision.pki import issue_collector
from tests.control_runner import run_control
from tests.lab import admin_sql
from ztm import anchoring
from ztm.anchoring import public_key
from ztm.anchoring.sinks import FileSink
from ztm.audit_chain import link_hash
from ztm.target import load_target

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]
ROOT = Path(__file__).resolve().parents[2]
GUARDS = ("audit_events_guard_insert", "audit_events_guard_update", "audit_events_guard_delete",
          "audit_chain_head_guard_insert", "audit_chain_head_guard_update", "audit_chain_head_guard_delete")
DEADLINE = 180  # seconds: generous, everything here runs on a loaded machine


def target_copy(lab, tmp_path: Path, name: str = "target.toml", drop: tuple[str, ...] = (),
                **anchor_changes) -> Path:
    """The lab target with other [anchor] settings; by default anchors go to a scratch file sink."""
    doc = tomllib.loads(lab.target_file.read_text())
    doc["anchor"].update({"sinks": [{"kind": "file", "path": str(tmp_path / "anchors.jsonl")}], **anchor_changes})
    for key in drop:
        doc["anchor"].pop(key, None)
    path = tmp_path / name
    path.write_text(tomli_w.dumps(doc))
    return path


def ztm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ztm.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def once(target: Path, *extra: str) -> subprocess.CompletedProcess:
    done = ztm("anchor", "once", "--target", str(target), *extra)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def quiet_lab(lab) -> Iterator[object]:
    """The lab with its anchor process stopped (restarted afterwards)."""
    anchor_down(lab)
    try:
        yield lab
    finally:
        anchor_up(lab)


@contextmanager
def tampered_trail(lab) -> Iterator[object]:
    """An admin cursor with the audit guards dropped; afterwards every audit row and every
    lane's head are put back exactly and the guards re-applied."""
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT lane, seq, payload, prev_hash, curr_hash FROM securedb.audit_events ORDER BY lane, seq")
        saved = list(cur.fetchall())
        cur.execute("SELECT lane, seq, head_hash FROM securedb.audit_chain_head")
        heads = list(cur.fetchall())
    assert len(saved) >= 4, "the lab audit trail needs a few events for this test"
    try:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("USE securedb")
            for trigger in GUARDS:
                cur.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            yield cur
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("USE securedb")
            for trigger in GUARDS:
                cur.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            cur.execute("DELETE FROM audit_events")
            cur.executemany("INSERT INTO audit_events (lane, seq, payload, prev_hash, curr_hash) "
                            "VALUES (%s, %s, %s, %s, %s)", saved)
            cur.execute("DELETE FROM audit_chain_head")
            cur.executemany("INSERT INTO audit_chain_head (lane, seq, head_hash) VALUES (%s, %s, %s)", heads)
        with lab.admin() as conn:
            schema.apply(conn, account_host=ACCOUNT_HOST)


def busiest(cur) -> int:
    """The lane with the most events: the one these tests tamper with."""
    cur.execute("SELECT lane FROM audit_chain_head ORDER BY seq DESC, lane LIMIT 1")
    return cur.fetchone()[0]


def newest(cur) -> tuple[int, str]:
    """(seq, head_hash) of the busiest lane."""
    cur.execute("SELECT seq, head_hash FROM audit_chain_head WHERE lane = %s", (busiest(cur),))
    return cur.fetchone()


def append_forged(cur, after_seq: int, count: int, tag: str) -> int:
    """What a restore from an old backup followed by new traffic leaves in the busiest lane:
    rows after ``after_seq`` replaced by ``count`` other, correctly chained rows."""
    lane = busiest(cur)
    cur.execute("SELECT curr_hash FROM audit_events WHERE lane = %s AND seq = %s", (lane, after_seq))
    (prev,) = cur.fetchone()
    cur.execute("DELETE FROM audit_events WHERE lane = %s AND seq > %s", (lane, after_seq))
    seq = after_seq
    for seq in range(after_seq + 1, after_seq + count + 1):
        payload = f'{{"lane": {lane}, "seq": {seq}, ' + json.dumps({"table": "accounts", "op": "INSERT",
                                                                  "tag": tag})[1:]
        curr = link_hash(prev, payload)
        cur.execute("INSERT INTO audit_events VALUES (%s, %s, %s, %s, %s)", (lane, seq, payload, prev, curr))
        prev = curr
    cur.execute("UPDATE audit_chain_head SET seq = %s, head_hash = %s WHERE lane = %s", (seq, prev, lane))
    return seq


def drop_newest_two(cur) -> int:
    """Delete the two newest audit rows of the busiest lane and move its head back onto the
    row before them, as an admin with the guards dropped would; returns the seq the head had."""
    lane = busiest(cur)
    seq, _ = newest(cur)
    cur.execute("SELECT curr_hash FROM audit_events WHERE lane = %s AND seq = %s", (lane, seq - 2))
    (keep_hash,) = cur.fetchone()
    cur.execute("DELETE FROM audit_events WHERE lane = %s AND seq > %s", (lane, seq - 2))
    cur.execute("UPDATE audit_chain_head SET seq = %s, head_hash = %s WHERE lane = %s", (seq - 2, keep_hash, lane))
    return seq


def test_aud3_fails_when_the_newest_audit_rows_are_deleted(quiet_lab, control):
    lab = quiet_lab
    assert once(lab.target_file).returncode == 0
    with tampered_trail(lab) as cur:
        drop_newest_two(cur)
        run = control("ZTM-AUD-3")
    run.assert_failed("test_database_is_consistent_with_every_anchor", "behind the anchored seq", "truncated")


def test_aud3_fails_when_rows_were_deleted_between_two_anchors(quiet_lab, tmp_path):
    """The anchor process kept running while the admin deleted the newest rows: the anchor
    after the deletion is consistent with the database, the pair of anchors is not."""
    target = target_copy(quiet_lab, tmp_path)
    assert once(target).returncode == 0
    with tampered_trail(quiet_lab) as cur:
        seq = drop_newest_two(cur)
        assert once(target).returncode == 0
        run = run_control(target, "ZTM-AUD-3")
    run.assert_failed("test_anchor_chain_is_continuous_and_signed", "went backwards", f"({seq} -> {seq - 2})")


def test_aud3_fails_when_the_database_is_rolled_back_behind_an_anchor(quiet_lab, tmp_path):
    """Restored from a backup taken before the anchor, then new traffic: the head is past the
    anchored seq again and the rows chain correctly, but not through the anchor."""
    target = target_copy(quiet_lab, tmp_path)
    assert once(target).returncode == 0
    with tampered_trail(quiet_lab) as cur:
        seq, _ = newest(cur)
        assert append_forged(cur, seq - 2, 5, "after the restore") > seq
        run = run_control(target, "ZTM-AUD-3")
    message = run.assert_failed("test_database_is_consistent_with_every_anchor", "does not pass through anchor 1",
                                "rolled back")
    assert "behind the anchored seq" not in message  # the head is ahead: only the anchored hash shows it


def test_aud3_names_the_oldest_anchor_a_rewritten_row_hides_behind(quiet_lab, tmp_path):
    """Rows rewritten from the middle on and the whole rest re-chained: the chain recomputes,
    so only the anchors show it, and the verdict names the first anchor it breaks."""
    target = target_copy(quiet_lab, tmp_path)
    with tampered_trail(quiet_lab) as cur:
        seq, _ = newest(cur)
        assert once(target).returncode == 0  # anchor 1 at the head
        append_forged(cur, seq, 2, "new traffic")
        assert once(target).returncode == 0  # anchor 2, two rows later
        append_forged(cur, seq - 1, 4, "rewritten")  # from seq on, every row rewritten and re-chained
        run = run_control(target, "ZTM-AUD-3")
    run.assert_failed("test_database_is_consistent_with_every_anchor", "does not pass through anchor 1",
                      f"row seq {seq} has hash")


def test_aud3_fails_when_a_row_behind_the_newest_anchor_is_rewritten(quiet_lab, tmp_path):
    target = target_copy(quiet_lab, tmp_path)
    assert once(target).returncode == 0
    with tampered_trail(quiet_lab) as cur:
        lane = busiest(cur)
        cur.execute("UPDATE audit_events SET payload = CONCAT(payload, ' ') WHERE lane = %s AND seq = 2", (lane,))
        run = run_control(target, "ZTM-AUD-3")
    run.assert_failed("test_database_is_consistent_with_every_anchor", f"lane {lane}: audit chain broken at seq 2",
                      "hash mismatch")


def test_aud3_fails_when_a_lane_disappears_from_the_database(quiet_lab, control):
    """A lane-specific break: one lane's rows and its head row deleted (guards dropped); the
    other lanes are intact, so only the per-lane checks against the anchor can show it."""
    lab = quiet_lab
    assert once(lab.target_file).returncode == 0
    with tampered_trail(lab) as cur:
        lane = busiest(cur)
        cur.execute("DELETE FROM audit_events WHERE lane = %s", (lane,))
        cur.execute("DELETE FROM audit_chain_head WHERE lane = %s", (lane,))
        run = control("ZTM-AUD-3")
    run.assert_failed("test_database_is_consistent_with_every_anchor", f"the head row of lane {lane} is missing")


def test_aud3_fails_when_a_trigger_is_added_to_the_audit_table(quiet_lab, control):
    lab = quiet_lab
    assert once(lab.target_file).returncode == 0  # the newest anchor predates the change
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE TRIGGER securedb.ztm_extra_audit_trigger BEFORE INSERT ON securedb.audit_events "
                    "FOR EACH ROW SET @ztm_seen = NEW.seq")
    try:
        run = control("ZTM-AUD-3")
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("DROP TRIGGER securedb.ztm_extra_audit_trigger")
    run.assert_failed("test_database_is_consistent_with_every_anchor", "definitions changed since the newest anchor",
                      "added trigger:ztm_extra_audit_trigger")


def test_aud3_names_a_data_trigger_and_a_constraint_changed_since_the_newest_anchor(quiet_lab, control):
    """What decides what is recorded and enforced is anchored too: the data triggers and the data
    tables' constraints, not only the audit tables."""
    lab = quiet_lab
    assert once(lab.target_file).returncode == 0
    with admin_sql.broken(lab) as run:  # re-applying provision/sql puts the trigger back, not the CHECK
        try:
            run("DROP TRIGGER accounts_audit_update",
                "CREATE DEFINER = 'api_definer'@'localhost' TRIGGER accounts_audit_update AFTER UPDATE ON accounts "
                "FOR EACH ROW SET @ztm_unrecorded = NEW.account_id",
                "ALTER TABLE accounts DROP CONSTRAINT ck_accounts_balance")
            result = control("ZTM-AUD-3")
        finally:
            if not run("SELECT 1 FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = DATABASE() "
                       "AND CONSTRAINT_NAME = 'ck_accounts_balance'"):
                run("ALTER TABLE accounts ADD CONSTRAINT ck_accounts_balance CHECK (balance >= 0)")
    result.assert_failed("test_database_is_consistent_with_every_anchor", "definitions changed since the newest anchor",
                         "trigger:accounts_audit_update", "table:accounts")


def test_aud3_flags_an_undeclared_ddl_change_between_anchors_and_accepts_a_declared_one(quiet_lab, tmp_path):
    for sub in ("undeclared", "declared"):
        (tmp_path / sub).mkdir()
    # A long interval: these runs judge the DDL change, not freshness (loaded CI machines are slow).
    undeclared = target_copy(quiet_lab, tmp_path / "undeclared", interval_seconds=3600)
    declared = target_copy(quiet_lab, tmp_path / "declared", interval_seconds=3600)
    for target in (undeclared, declared):
        assert once(target).returncode == 0
    nothing = once(declared, "--ddl-change", "CHG-1 nothing changed")
    assert nothing.returncode == 2 and "no change to declare" in nothing.stderr + nothing.stdout
    with quiet_lab.admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE TRIGGER securedb.ztm_extra_audit_trigger BEFORE INSERT ON securedb.audit_events "
                    "FOR EACH ROW SET @ztm_seen = NEW.seq")
    try:
        assert once(undeclared).returncode == 0
        done = once(declared, "--ddl-change", "CHG-2 extra trigger, reviewed by the assessor")
        assert done.returncode == 0 and "declared DDL change: CHG-2" in done.stdout, done.stdout + done.stderr
        run_undeclared = run_control(undeclared, "ZTM-AUD-3")
        run_declared = run_control(declared, "ZTM-AUD-3")
    finally:
        with quiet_lab.admin() as conn, conn.cursor() as cur:
            cur.execute("DROP TRIGGER securedb.ztm_extra_audit_trigger")
    run_undeclared.assert_failed("test_anchor_chain_is_continuous_and_signed", "changed between anchor 1",
                                 "no declared change")
    run_declared.assert_all_passed()


def test_an_installer_schema_change_is_declared_not_reported_as_tampering(quiet_lab, tmp_path):
    """What 'ztm lab up' does after applying the schema: a changed audit DDL digest is
    declared in a new anchor; an unchanged one declares nothing."""
    from provision.anchor_cli import declare_schema_change

    target = target_copy(quiet_lab, tmp_path, interval_seconds=3600)  # freshness is not judged here
    assert declare_schema_change(target, "nothing anchored yet") is None
    assert once(target).returncode == 0
    assert declare_schema_change(target, "unchanged") is None
    with quiet_lab.admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE TRIGGER securedb.ztm_extra_audit_trigger BEFORE INSERT ON securedb.audit_events "
                    "FOR EACH ROW SET @ztm_seen = NEW.seq")
    try:
        record = declare_schema_change(target, "audit schema applied by the installer")
        run = run_control(target, "ZTM-AUD-3")
    finally:
        with quiet_lab.admin() as conn, conn.cursor() as cur:
            cur.execute("DROP TRIGGER securedb.ztm_extra_audit_trigger")
    assert record and record["checkpoint"]["ddl_change"] == "audit schema applied by the installer"
    run.assert_all_passed()


INTERVAL = 30  # the control run after a fresh anchor has 2 * INTERVAL to finish, even on a loaded machine


def test_aud3_freshness_passes_while_the_anchor_runs_and_fails_once_it_stops(lab, tmp_path):
    """An anchor process of its own (30 s interval, scratch sink): while it runs the newest
    anchor stays fresh; once stopped, the control fails when two intervals have passed."""
    target = target_copy(lab, tmp_path, interval_seconds=INTERVAL)
    sink = FileSink(tmp_path / "anchors.jsonl")
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(netns.in_netns(netns.LOG.netns, [sys.executable, "-m", "ztm.cli", "anchor", "run",
                                                               "--target", str(target)]),
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and len(_records(sink)) < 2 and proc.poll() is None:
            time.sleep(0.5)  # polling for two anchors: the process is up and anchoring every interval
        assert len(_records(sink)) >= 2, log.read_text()[-2000:]
        running = run_control(target, "ZTM-AUD-3")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    running.assert_all_passed()
    public = public_key(load_target(target), load_target(target).section("anchor"))
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:  # staleness only grows now: poll until it is past two intervals
        latest = anchoring.verify_anchor_chain(_records(sink), public).latest
        if anchoring.check_freshness(latest, 2 * INTERVAL) is not None:
            break
        time.sleep(1)
    run = run_control(target, "ZTM-AUD-3")
    run.assert_failed("test_newest_anchor_is_fresh", "not running or cannot ship", f"limit {2 * INTERVAL} s")


def _records(sink: FileSink) -> list[dict]:
    return sink.read() if sink.path.exists() else []


def test_aud3_fails_for_an_anchor_signed_with_another_key(lab, tmp_path):
    forged_sink = tmp_path / "anchors.jsonl"
    shutil.copyfile(lab.log_host / "anchors.jsonl", forged_sink)
    records = FileSink(forged_sink).read()  # complete lines only: the lab anchor may be appending
    state = {k: records[-1]["checkpoint"][k] for k in ("events", "lanes", "heads_digest", "ddl_digest")}
    forged = anchoring.make_anchor(state, records[-1], Ed25519PrivateKey.generate(),
                                   records[-1]["checkpoint"]["target"])
    with open(forged_sink, "a") as handle:
        handle.write(json.dumps(forged) + "\n")
    run = run_control(target_copy(lab, tmp_path), "ZTM-AUD-3")
    run.assert_failed("test_anchor_chain_is_continuous_and_signed", "signature does not verify")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sink_that_is_down_is_named_buffered_shown_as_a_gap_and_delivered_later(lab, tmp_path):
    """The syslog collector is down: 'anchor once' exits 1 naming it, the anchor waits in the
    local buffer, the sink lags (a gap, once older than the 1 s interval); the collector comes
    back and receives every anchor, none dropped."""
    port = _free_port()  # nothing listens there: the collector is down
    journal = tmp_path / "journal.jsonl"
    syslog = {"kind": "syslog", "address": f"127.0.0.1:{port}", "server_name": COLLECTOR_NAME,
              "ca": str(lab.pki.ca_cert), "cert": str(lab.pki.client("auditor", "pem")),
              "key": str(lab.pki.client("auditor", "key")), "journal": str(journal)}
    target = target_copy(lab, tmp_path, interval_seconds=1, drop=("tsa_url",),
                         sinks=[{"kind": "file", "path": str(tmp_path / "anchors.jsonl")}, syslog])
    journal.touch()
    down = once(target)
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"FAILED: sink syslog://127.0.0.1:{port}" in down.stdout, down.stdout
    assert "buffered" in down.stdout and "shipped to 1 of 2 sink(s)" in down.stdout, down.stdout
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:  # the gap shows once the undelivered anchor is older than the interval
        run = run_control(target, "ZTM-AUD-3")
        if "gap" in run.outcome("test_anchor_chain_is_continuous_and_signed").message:
            break
    run.assert_failed("test_anchor_chain_is_continuous_and_signed", f"syslog://127.0.0.1:{port}",
                      "gap: anchors 1..1", "never delivered")
    cert, key = issue_collector(lab.pki, name=COLLECTOR_NAME, address=netns.LOG.address)  # the lab's own
    collector = subprocess.Popen([sys.executable, "-m", "provision.syslog_collector", "--listen", f"127.0.0.1:{port}",
                                  "--cert", str(cert), "--key", str(key), "--ca", str(lab.pki.ca_cert),
                                  "--journal", str(journal)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        said = [collector.stdout.readline(), collector.stdout.readline()]  # blocks until bound (or died)
        assert said[0].startswith(f"journal {journal}: append-only attribute"), said
        assert said[1].startswith("listening on"), f"the scratch collector did not start: {said}"
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:  # the first retry waits out a 1 s backoff
            done = once(target)
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        collector.terminate()
        collector.wait(timeout=60)
        subprocess.run(["chattr", "-a", str(journal)], capture_output=True)
    file_seqs = [r["checkpoint"]["anchor_seq"] for r in FileSink(tmp_path / "anchors.jsonl").read()]
    syslog_seqs = [json.loads(e["message"].split(" anchor - ", 1)[1])["checkpoint"]["anchor_seq"]
                   for e in FileSink(journal).read()]
    assert syslog_seqs == file_seqs and file_seqs == list(range(1, len(file_seqs) + 1))  # none dropped, none twice


def test_a_tsa_outage_still_anchors_and_the_missing_timestamp_is_reported(lab, tmp_path):
    target = target_copy(lab, tmp_path, tsa_url=f"http://127.0.0.1:{_free_port()}/")
    done = once(target)
    assert done.returncode == 1 and "carries no RFC 3161 timestamp" in done.stdout, done.stdout + done.stderr
    (record,) = FileSink(tmp_path / "anchors.jsonl").read()
    assert "tst" not in record and "did not answer" in record["tst_missing"]
    run = run_control(target, "ZTM-AUD-3")
    run.assert_failed("test_anchors_carry_valid_rfc3161_timestamps", "anchor 1 carries no RFC 3161 timestamp",
                      "the TSA was unavailable")


def test_an_export_is_matched_to_the_anchors_offline(lab, tmp_path):
    export = tmp_path / "audit.jsonl"
    assert ztm("audit", "export", "--target", str(lab.target_file), "--out", str(export)).returncode == 0
    good = ztm("anchor", "verify", "--target", str(lab.target_file), "--dump", str(export))
    assert "passes through anchors 1.." in good.stdout, good.stdout + good.stderr
    assert good.returncode == 0, good.stdout + good.stderr
    lines = export.read_text().splitlines()
    export.write_text("\n".join(lines[:2] + lines[-1:]) + "\n")  # newest rows cut out, head trailer kept
    bad = ztm("anchor", "verify", "--target", str(lab.target_file), "--dump", str(export))
    assert bad.returncode == 1 and "do not end where the head trailer says" in bad.stdout, bad.stdout + bad.stderr
