"""The write procedures behave inside a caller's transaction, and the rewrap version check
is atomic.

app_transfer neither commits work the caller did before it (START TRANSACTION would) nor
rolls it back when the transfer is refused; alone (autocommit) it is still atomic. Eight
concurrent rewraps of one record: every accepted one raised the version, in the trail as in
the row.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from decimal import Decimal

import pymysql
import pytest

from tests.lab.fake_records import app_in_tenant, lab_record, writer_accounts
from ztm.db import connect

pytestmark = pytest.mark.lab




def _balances(conn, accounts: list[str]) -> list[Decimal]:
    with conn.cursor() as cur:
        cur.execute("SELECT account_id, balance FROM v_accounts WHERE account_id IN (%s, %s)", tuple(accounts))
        found = dict(cur.fetchall())
    return [found[a] for a in accounts]


def test_transfer_keeps_the_callers_transaction_whole(lab_target, envelope):
    tenant = lab_target.raw["tenants"]["granted"][0]
    conn, observer = app_in_tenant(lab_target, tenant), app_in_tenant(lab_target, tenant)
    try:
        with conn.cursor() as cur:
            source, dest = writer_accounts(cur, envelope, tenant, opening=100)
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("CALL app_transfer(%s, %s, 10)", (source, dest))
            with pytest.raises(pymysql.MySQLError, match="insufficient funds"):
                cur.execute("CALL app_transfer(%s, %s, 1000)", (source, dest))
        inside = _balances(conn, [source, dest])
        outside = _balances(observer, [source, dest])
        conn.rollback()
        after_rollback = _balances(observer, [source, dest])
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("CALL app_transfer(%s, %s, 5)", (source, dest))
        conn.commit()
        committed = _balances(observer, [source, dest])
    finally:
        conn.close()
        observer.close()
    assert inside == [90, 110], f"the refused transfer rolled back the caller's earlier transfer: {inside}"
    assert outside == [100, 100], f"app_transfer committed the caller's open transaction: others see {outside}"
    assert after_rollback == [100, 100], f"the caller's ROLLBACK did not undo the transfer: {after_rollback}"
    assert committed == [95, 105], f"the caller's COMMIT did not publish the transfer: {committed}"


def test_eight_concurrent_rewraps_only_ever_raise_the_version(lab, lab_target, envelope):
    """A throwaway record (the wraps are random bytes: only the version logic is under test),
    deleted afterwards by the admin (an audited DELETE), so no later control samples it."""
    tenant, user_id = lab_target.raw["tenants"]["granted"][0], str(uuid.uuid4())
    with app_in_tenant(lab_target, tenant) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("CALL app_create_user_encrypted(%s)", (lab_record(envelope, tenant, user_id),))
        cur.fetchall()
        cur.execute("SELECT * FROM v_users WHERE user_id = %s", (user_id,))
        version = int(cur.fetchone()["pii_key_version"])
    wraps = {v: base64.b64encode(os.urandom(40)).decode() for v in range(version + 1, version + 9)}
    barrier, accepted, refused, lock = threading.Barrier(len(wraps)), [], [], threading.Lock()

    def rewrap(to_version: int) -> None:
        with app_in_tenant(lab_target, tenant) as conn, conn.cursor() as cur:
            barrier.wait(timeout=30)
            try:
                cur.execute("CALL app_rewrap_user_key(%s, %s, %s, %s)",
                            (user_id, wraps[to_version], "pkcs11:token=test;object=test", to_version))
                outcome = accepted
            except pymysql.MySQLError as exc:
                assert "must increase" in str(exc.args[-1]), exc
                outcome = refused
            with lock:
                outcome.append(to_version)

    threads = [threading.Thread(target=rewrap, args=(v,), daemon=True) for v in wraps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        with app_in_tenant(lab_target, tenant) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT pii_key_version FROM v_users WHERE user_id = %s", (user_id,))
            final = int(cur.fetchone()["pii_key_version"])
    finally:
        with lab.admin() as admin, admin.cursor() as cur:
            cur.execute(f"DELETE FROM `{lab_target.database}`.users WHERE user_id = %s", (user_id,))
    assert len(accepted) + len(refused) == len(wraps), f"writers did not finish: {accepted=} {refused=}"
    with connect(lab_target, lab_target.roles["auditor"]) as auditor, auditor.cursor() as cur:
        cur.execute(f"SELECT payload FROM `{lab_target.database}`.audit_events WHERE payload LIKE %s "
                    "ORDER BY lane, seq",
                    (f'%"UPDATE"%{user_id}%',))
        trail = [json.loads(p)["after"]["pii_key_version"] for (p,) in cur.fetchall()]
    assert final == max(accepted), f"the record ends at version {final} but version {max(accepted)} was accepted"
    assert trail == sorted(accepted) and len(set(trail)) == len(trail), (
        f"the trail records versions {trail}: a rewrap was accepted without raising the version")
