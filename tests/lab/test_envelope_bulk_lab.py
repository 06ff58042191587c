"""Bulk load on the lab (app_create_users_encrypted, `ztm envelope import`): a batch is stored
whole with one audit event per row (and ZTM-AUD-4 reconciles after it) or not at all; a
record of another tenant, or a call without a tenant context, is refused; inside a caller's
transaction it neither commits nor rolls back the caller's work; the CLI imports a JSON
Lines file in batches and the records decrypt; a bad line is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pymysql
import pytest

from envelope import branch, bulk
from envelope.setup import client_for
from ztm.audit_chain import verify_database
from ztm.db import connect

pytestmark = pytest.mark.lab

ZTM = Path(sys.executable).parent / "ztm"


def _pii(i: int) -> dict[str, str]:
    return {"name": f"Bulk Person {i}", "email": f"bulk-{i}@example.invalid", "phone": f"+1555{i:07d}"}


@pytest.fixture(scope="module")
def envelope(lab_target):
    client = client_for(lab_target)
    yield client
    client.kms.close()


@pytest.fixture
def app(lab_target):
    conn = connect(lab_target, lab_target.roles["app"], database=lab_target.database)
    with conn.cursor() as cur:
        cur.execute("CALL security_set_tenant(%s)", (lab_target.raw["tenants"]["granted"][0],))
    yield conn
    conn.close()


@pytest.fixture
def admin(lab_target):
    conn = connect(lab_target, lab_target.roles["admin"])
    yield conn
    conn.close()


def _tenant(lab_target, i: int = 0) -> str:
    return lab_target.raw["tenants"]["granted"][i]


def _stored(admin, database: str, user_ids: list[str]) -> tuple[int, int]:
    """(rows in users, INSERT events in the trail) for these records."""
    marks = ", ".join(["%s"] * len(user_ids))
    with admin.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{database}`.users WHERE user_id IN ({marks})", user_ids)
        (rows,) = cur.fetchone()
        cur.execute(f"SELECT COUNT(*) FROM `{database}`.audit_events WHERE payload LIKE %s AND ("
                    + " OR ".join(["payload LIKE %s"] * len(user_ids)) + ")",
                    ['%"op": "INSERT"%', *[f"%{u}%" for u in user_ids]])
        (events,) = cur.fetchone()
    admin.commit()  # a fresh snapshot next time
    return rows, events


def test_a_batch_is_stored_whole_and_every_row_audited(lab_target, envelope, app, admin, control):
    docs = [envelope.encrypt_user(_tenant(lab_target), _pii(i)) for i in range(60)]
    assert bulk.insert_batch(app, docs) == 60
    ids = [d["user_id"] for d in docs]
    assert _stored(admin, lab_target.database, ids) == (60, 60)
    assert len({branch.unpack(bytes.fromhex(_hex(admin, lab_target.database, u)))[0] for u in ids}) == 60
    report = verify_database(admin)
    assert report.intact, report.describe()
    control("ZTM-AUD-4").assert_all_passed()


def _hex(admin, database: str, user_id: str) -> str:
    with admin.cursor() as cur:
        cur.execute(f"SELECT HEX(pii_wrapped_key) FROM `{database}`.users WHERE user_id = %s", (user_id,))
        return cur.fetchone()[0]


def test_a_batch_with_one_bad_record_stores_none(lab_target, envelope, app, admin):
    """A duplicate key fails inside the INSERT (after other rows went in): all undone, with
    their audit events; a record that is not base64 is refused before anything is written."""
    tenant = _tenant(lab_target)
    docs = [envelope.encrypt_user(tenant, _pii(i)) for i in range(20)]
    clash = dict(envelope.encrypt_user(tenant, _pii(99)), user_id=docs[3]["user_id"])
    with pytest.raises(pymysql.MySQLError, match="Duplicate"):
        bulk.insert_batch(app, [*docs, clash])
    broken = [*docs[:5], dict(docs[5], name={"ct": "***", "iv": "", "aad": ""})]
    with pytest.raises(pymysql.MySQLError, match="not base64"):
        bulk.insert_batch(app, broken)
    assert _stored(admin, lab_target.database, [d["user_id"] for d in docs]) == (0, 0)


def test_records_of_another_tenant_are_refused(lab_target, envelope, app, admin):
    mine = [envelope.encrypt_user(_tenant(lab_target, 0), _pii(i)) for i in range(5)]
    foreign = envelope.encrypt_user(_tenant(lab_target, 1), _pii(7))
    with pytest.raises(pymysql.MySQLError, match="belongs to another tenant"):
        bulk.insert_batch(app, [*mine, foreign])
    assert _stored(admin, lab_target.database, [d["user_id"] for d in [*mine, foreign]]) == (0, 0)


def test_refused_without_a_tenant_context(lab_target, envelope, admin):
    conn = connect(lab_target, lab_target.roles["app"], database=lab_target.database)
    doc = envelope.encrypt_user(_tenant(lab_target), _pii(1))
    try:
        with pytest.raises(pymysql.MySQLError, match="no tenant context"):
            bulk.insert_batch(conn, [doc])
    finally:
        conn.close()
    assert _stored(admin, lab_target.database, [doc["user_id"]]) == (0, 0)


def test_inside_a_callers_transaction_it_neither_commits_nor_rolls_back(lab_target, envelope, app, admin):
    tenant = _tenant(lab_target)
    first = [envelope.encrypt_user(tenant, _pii(i)) for i in range(5)]
    refused = [envelope.encrypt_user(tenant, _pii(9)), dict(first[0])]  # first[0] again: a duplicate
    ids = [d["user_id"] for d in first]
    app.begin()
    bulk.insert_batch(app, first)
    with pytest.raises(pymysql.MySQLError, match="Duplicate"):
        bulk.insert_batch(app, refused)
    with app.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM v_users WHERE user_id IN (%s, %s, %s, %s, %s)", ids)
        (inside,) = cur.fetchone()
    outside = _stored(admin, lab_target.database, ids)
    app.rollback()
    after_rollback = _stored(admin, lab_target.database, ids)
    app.begin()
    bulk.insert_batch(app, first)
    app.commit()
    committed = _stored(admin, lab_target.database, ids)
    assert inside == 5, f"the refused batch rolled back the caller's earlier batch: {inside} of 5 left"
    assert outside == (0, 0), f"the bulk call committed the caller's open transaction: {outside}"
    assert after_rollback == (0, 0), f"the caller's ROLLBACK did not undo the batch: {after_rollback}"
    assert committed == (5, 5), f"the caller's COMMIT did not publish the batch with its events: {committed}"


def test_cli_import_in_batches_and_the_records_decrypt(lab, lab_target, tmp_path, admin):
    tenant, ids = _tenant(lab_target), [str(uuid.uuid4()) for _ in range(23)]
    lines = tmp_path / "people.jsonl"
    lines.write_text("".join(json.dumps({**_pii(i), "user_id": u}) + "\n" for i, u in enumerate(ids)))
    done = subprocess.run([str(ZTM), "envelope", "import", "--target", str(lab.target_file), "--tenant", tenant,
                           "--input", str(lines), "--batch", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "imported 23 records" in done.stdout and "(1 KMS calls)" in done.stdout, done.stdout
    assert _stored(admin, lab_target.database, ids) == (23, 23)
    shown = subprocess.run([str(ZTM), "envelope", "decrypt", "--target", str(lab.target_file), "--tenant", tenant,
                            "--user-id", ids[17]], capture_output=True, text=True, timeout=300)
    assert json.loads(shown.stdout) == _pii(17), shown.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_pii(1)) + "\n{not json\n")
    refused = subprocess.run([str(ZTM), "envelope", "import", "--target", str(lab.target_file), "--tenant", tenant,
                              "--input", str(bad)], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "line 2" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
