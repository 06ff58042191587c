"""`ztm envelope` on the lab through the installed console script, in subprocesses:
encrypt -> the procedure -> decrypt; create-user over mTLS; break-glass recovery through the
PQ path on a copy of the token whose DEK KEKs are destroyed; a rewrap interrupted twice
(Ctrl-C, then a kill) that resumes and finishes with correct counts, field ciphertext
untouched and every re-wrap in the audit chain exactly once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest
import tomli_w

from envelope.client import PII_FIELDS
from tests.lab.hsm_copy import copy_token, destroy_keys
from ztm.audit_chain import lane_of, verify_database

pytestmark = pytest.mark.lab

ZTM = Path(sys.executable).parent / "ztm"
PII = {"name": "Cli Lab Person", "email": "cli-lab@example.invalid", "phone": "+15550202020"}
DEADLINE = 120  # seconds to wait for a condition under heavy load; polled, never slept through


def ztm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ZTM), "envelope", *args], input=stdin, capture_output=True, text=True, timeout=300)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return done.stdout


def test_encrypt_output_is_what_the_procedure_takes_and_decrypt_reads_it_back(lab, lab_target):
    tenant = lab_target.raw["tenants"]["granted"][0]
    target = str(lab.target_file)
    doc = ok(ztm("encrypt", "--target", target, "--tenant", tenant, stdin=json.dumps(PII)))
    from ztm.db import connect

    conn = connect(lab_target, lab_target.roles["app"], database="securedb")
    try:
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            cur.execute("CALL app_create_user_encrypted(%s)", (doc,))
            (user_id,) = cur.fetchone()
    finally:
        conn.close()
    assert user_id == json.loads(doc)["user_id"]
    assert json.loads(ok(ztm("decrypt", "--target", target, "--tenant", tenant, "--user-id", user_id))) == PII


def test_break_glass_recovers_through_the_pq_path_with_the_dek_kek_destroyed(lab, lab_target, tmp_path):
    tenant = lab_target.raw["tenants"]["granted"][0]
    out = ok(ztm("create-user", "--target", str(lab.target_file), "--tenant", tenant, stdin=json.dumps(PII)))
    match = re.match(r"created user ([0-9a-f-]{36}) in tenant .*PQ wrap HPKE-MLKEM768-X25519", out)
    assert match, out
    user_id = match[1]

    conf = copy_token(lab.kms.root, tmp_path / "hsm")
    destroyed = destroy_keys(conf, Path(lab_target.section("kms")["pin"]["file"]), "ztm-kek-v")
    assert "ztm-kek-v1" in destroyed and not any(label.startswith("ztm-pq-kek") for label in destroyed)
    raw = json.loads(json.dumps(lab_target.raw))
    raw["kms"]["env"]["SOFTHSM2_CONF"] = str(conf)
    broken = tmp_path / "target-without-dek-kek.toml"
    broken.write_text(tomli_w.dumps(raw))

    args = ("decrypt", "--target", str(broken), "--tenant", tenant, "--user-id", user_id)
    kms_path = ztm(*args)
    assert kms_path.returncode != 0 and "Traceback" not in kms_path.stderr
    assert "no key-encryption key ztm-kek-v1 on token ztm-kms" in kms_path.stderr  # the DEK KEK really is gone
    assert json.loads(ok(ztm(*args, "--via-pq"))) == PII
    # The lab's own token was never touched.
    assert json.loads(ok(ztm("decrypt", "--target", str(lab.target_file), "--tenant", tenant,
                             "--user-id", user_id))) == PII


def _poll(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        # The polling interval, not synchronisation (the condition decides). Above 0.1 s: InnoDB
        # refreshes its INNODB_TRX cache only after 0.1 s without a read, so faster polling
        # would keep reading a stale copy.
        time.sleep(0.25)
    raise AssertionError(f"timed out after {DEADLINE} s waiting for {what}")


class RowLock:
    """An admin transaction holding one user row FOR UPDATE: the rewrap blocks on that record."""

    def __init__(self, lab, user_id: str) -> None:
        self.conn = lab.admin()
        self.conn.autocommit(False)
        with self.conn.cursor() as cur:
            cur.execute("SELECT user_id FROM securedb.users WHERE user_id = %s FOR UPDATE", (user_id,))

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _statement_on(admin, user_id: str) -> int | None:
    """The server thread stuck on the locked record: on MariaDB its routine statement names the
    record (PROCESSLIST shows it with the parameter values); on MySQL PROCESSLIST shows the bare
    statement, and INNODB_TRX lists it in LOCK WAIT (the admin holds that one row lock only)."""
    with admin.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> CONNECTION_ID() "
                    "UNION SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX "
                    "WHERE trx_state = 'LOCK WAIT'", (f"%{user_id}%",))
        rows = cur.fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _interrupt_at(lab, admin, argv: list[str], blocked_user: str, done_before: int, versions, how: signal.Signals):
    """Run the rewrap until it blocks on ``blocked_user`` (its statement cannot finish while the
    row is locked; ``done_before`` records are re-wrapped by then), then stop it with ``how``;
    the server session it leaves behind is killed too, so the blocked re-wrap never lands."""
    lock = RowLock(lab, blocked_user)
    try:
        # SIGINT as a terminal sends it (a CI shell may have it ignored, which the child would inherit)
        proc = subprocess.Popen([str(ZTM), "envelope", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            def blocked() -> int | None:
                if proc.poll() is not None:
                    raise AssertionError(f"the rewrap ended (exit {proc.returncode}) before reaching the locked "
                                         f"record: {proc.communicate()}")
                return _statement_on(admin, blocked_user)

            thread = _poll(blocked, "the rewrap to block on the locked record")
            assert versions()[0] == done_before, "the rewrap did not stop at the locked record"
            os.kill(proc.pid, how)
            out, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=DEADLINE)
        with admin.cursor() as cur:  # the dead client's statement still waits on the server: end it
            cur.execute(f"KILL {int(thread)}")
        _poll(lambda: _statement_on(admin, blocked_user) is None, "the orphaned statement to end")
    finally:
        lock.release()
    return proc.returncode, out, err


def test_interrupted_rewrap_resumes_and_finishes(lab, lab_target):
    from envelope.setup import client_for
    from tests.lab.fake_records import lab_record
    from ztm.db import connect

    tenant = lab_target.raw["tenants"]["granted"][1]
    client = client_for(lab_target, cache=False)  # one DEK per record
    app = connect(lab_target, lab_target.roles["app"], database="securedb")
    admin = lab.admin()
    mine = []
    try:
        with app.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            for _ in range(6):
                cur.execute("CALL app_create_user_encrypted(%s)", (lab_record(client, tenant, None),))
                mine.append(cur.fetchall()[0][0])
        new_version = max(int(v) for v in _column(admin, tenant, "pii_key_version").values()) + 1
        client.kms.create_kek(new_version)
    finally:
        app.close()
        client.kms.close()

    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT * FROM securedb.users WHERE tenant_id = %s ORDER BY user_id", (tenant,))
        before = {r["user_id"]: r for r in cur.fetchall()}
        cur.execute("SELECT seq AS s FROM securedb.audit_chain_head WHERE lane = %s", (lane_of(tenant),))
        seq_before = cur.fetchone()["s"]  # the rewrap's events all go to the tenant's lane
        cur.execute("SELECT @@GLOBAL.innodb_lock_wait_timeout AS t")
        lock_wait = cur.fetchone()["t"]
    order = list(before)  # the rewrap's order: by user_id
    total = len(order)

    def versions() -> tuple[int, int]:
        current = _column(admin, tenant, "pii_key_version")
        return sum(int(v) == new_version for v in current.values()), len(current)

    argv = ["rewrap", "--target", str(lab.target_file), "--tenant", tenant, "--to-version", str(new_version)]
    with admin.cursor() as cur:  # the blocked rewrap must not give up on its own while we look
        cur.execute("SET GLOBAL innodb_lock_wait_timeout = 3600")
    try:
        code, _, err = _interrupt_at(lab, admin, argv, order[1], 1, versions, signal.SIGINT)
        assert code == 130 and "rewrap interrupted after 1 re-wrapped (committed); run the same command again " \
                               "to resume" in err and "Traceback" not in err, err
        code, _, err = _interrupt_at(lab, admin, argv, order[3], 3, versions, signal.SIGKILL)
        assert code == -signal.SIGKILL
    finally:
        with admin.cursor() as cur:
            cur.execute(f"SET GLOBAL innodb_lock_wait_timeout = {int(lock_wait)}")
    assert versions() == (3, total)

    out = ok(ztm(*argv))
    assert f"rewrap to KEK version {new_version}: {total - 3} re-wrapped, 3 already current, 0 failed" in out, out
    again = ok(ztm(*argv))
    assert f"0 re-wrapped, {total} already current, 0 failed, 0 KMS calls" in again, again

    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT * FROM securedb.users WHERE tenant_id = %s", (tenant,))
        after = {r["user_id"]: r for r in cur.fetchall()}
        cur.execute("SELECT payload FROM securedb.audit_events WHERE lane = %s AND seq > %s",
                    (lane_of(tenant), seq_before))
        events = [json.loads(p["payload"]) for p in cur.fetchall()]
    for user_id, row in after.items():
        assert int(row["pii_key_version"]) == new_version
        assert all(row[f"{f}_{p}"] == before[user_id][f"{f}_{p}"] for f in PII_FIELDS for p in ("ct", "iv", "aad"))
        assert row["pii_pq_wrapped_key"] == before[user_id]["pii_pq_wrapped_key"]
        assert row["pii_wrapped_key"] != before[user_id]["pii_wrapped_key"]
    updates = [e for e in events if e["table"] == "users" and e["op"] == "UPDATE"]
    assert sorted(e["key"] for e in updates) == sorted(order), "each re-wrap is audited exactly once"
    assert all(e["after"]["pii_key_version"] == new_version and e["before"]["name_ct"] == e["after"]["name_ct"]
               for e in updates)
    report = verify_database(admin)
    admin.close()
    assert report.intact, report.describe()
    for user_id in mine[:2]:  # both paths still open re-wrapped records
        args = ("decrypt", "--target", str(lab.target_file), "--tenant", tenant, "--user-id", user_id)
        assert json.loads(ok(ztm(*args))) == json.loads(ok(ztm(*args, "--via-pq")))


def _column(admin, tenant: str, column: str) -> dict[str, object]:
    with admin.cursor() as cur:
        cur.execute(f"SELECT user_id, {column} FROM securedb.users WHERE tenant_id = %s", (tenant,))
        return dict(cur.fetchall())
