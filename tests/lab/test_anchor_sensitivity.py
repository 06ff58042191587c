"""ZTM-AUD-3 fails, and says why, when the newest audit rows are deleted by the admin, when
the anchor process has stopped for more than two intervals, and when an anchor is signed
with another key. Each test restores the lab."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision import schema
from provision.lab import anchor_down, anchor_up
from provision.netns import ACCOUNT_HOST
from tests.control_runner import run_control
from ztm import anchoring

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]


def target_copy(lab, tmp_path, **anchor_changes) -> object:
    import tomllib

    doc = tomllib.loads(lab.target_file.read_text())
    doc["anchor"].update(anchor_changes)
    path = tmp_path / "target.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def test_aud3_fails_when_the_newest_audit_rows_are_deleted(lab, control):
    anchor_down(lab)  # no new anchor may race the tampering
    subprocess.run([sys.executable, "-m", "ztm.cli", "anchor", "once", "--target", str(lab.target_file)],
                   check=True, capture_output=True)
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("USE securedb")
        cur.execute("SELECT seq, payload, prev_hash, curr_hash FROM audit_events ORDER BY seq DESC LIMIT 3")
        newest = list(cur.fetchall())
        cur.execute("SELECT seq, head_hash FROM audit_chain_head")
        head = cur.fetchone()
        keep = newest[-1]  # the oldest of the three stays as the new (false) head
        for trigger in ("audit_events_guard_delete", "audit_events_guard_insert", "audit_chain_head_guard_update"):
            cur.execute(f"DROP TRIGGER {trigger}")
        cur.execute("DELETE FROM audit_events WHERE seq > %s", (keep[0],))
        cur.execute("UPDATE audit_chain_head SET seq = %s, head_hash = %s", (keep[0], keep[3]))
    try:
        run = control("ZTM-AUD-3")
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("USE securedb")
            for row in reversed(newest[:-1]):
                cur.execute("INSERT INTO audit_events VALUES (%s, %s, %s, %s)", row)
            cur.execute("UPDATE audit_chain_head SET seq = %s, head_hash = %s", head)
        with lab.admin() as conn:
            schema.apply(conn, account_host=ACCOUNT_HOST)
        anchor_up(lab)
    run.assert_failed("test_database_is_consistent_with_the_newest_anchor", "behind the anchored seq", "truncated")


def test_aud3_fails_when_the_anchor_process_stopped(lab, tmp_path):
    anchor_down(lab)
    try:
        time.sleep(2.5)  # more than two intervals of the 1-second target below
        run = run_control(target_copy(lab, tmp_path, interval_seconds=1), "ZTM-AUD-3")
    finally:
        anchor_up(lab)
    run.assert_failed("test_newest_anchor_is_fresh", "not running or cannot ship")


def test_aud3_fails_for_an_anchor_signed_with_another_key(lab, tmp_path):
    sink = lab.log_host / "anchors.jsonl"
    forged_sink = tmp_path / "anchors.jsonl"
    shutil.copyfile(sink, forged_sink)
    records = [json.loads(line) for line in forged_sink.read_text().splitlines() if line.strip()]
    state = {k: records[-1]["checkpoint"][k] for k in ("seq", "head_hash", "row_count", "ddl_digest")}
    forged = anchoring.make_anchor(state, records[-1], Ed25519PrivateKey.generate(), "forger")
    with open(forged_sink, "a") as handle:
        handle.write(json.dumps(forged) + "\n")
    run = run_control(target_copy(lab, tmp_path, sinks=[{"kind": "file", "path": str(forged_sink)}]), "ZTM-AUD-3")
    run.assert_failed("test_anchor_chain_is_continuous_and_signed", "signature does not verify")


def test_aud3_fails_when_a_trigger_is_added_to_the_audit_table(lab, control):
    anchor_down(lab)  # the newest anchor must predate the change, as on a real host between two anchors
    subprocess.run([sys.executable, "-m", "ztm.cli", "anchor", "once", "--target", str(lab.target_file)],
                   check=True, capture_output=True)
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE TRIGGER securedb.ztm_extra_audit_trigger BEFORE INSERT ON securedb.audit_events "
                    "FOR EACH ROW SET @ztm_seen = NEW.seq")
    try:
        run = control("ZTM-AUD-3")
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("DROP TRIGGER securedb.ztm_extra_audit_trigger")
        anchor_up(lab)
    run.assert_failed("test_database_is_consistent_with_the_newest_anchor", "DDL or guard triggers changed")
