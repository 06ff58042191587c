"""ZTM-CRY-2: when the target requires it, every record's DEK also carries a post-quantum
hybrid wrap (HPKE, ML-KEM-768 + X25519), and that wrap alone recovers the record.
"""

from __future__ import annotations

import pymysql
import pytest

from envelope import pq
from envelope.client import EnvelopeClient
from envelope.setup import client_for, pq_private_for

pytestmark = pytest.mark.control("ZTM-CRY-2")


@pytest.fixture(scope="module")
def required(target):
    if not target.section("crypto").get("require_pq"):
        pytest.skip("the target does not require post-quantum wraps ([crypto].require_pq is false)")


def test_every_record_carries_the_expected_pq_wrap(required, admin, evidence):
    with admin.cursor() as cur:
        cur.execute("SELECT user_id, pq_alg, LENGTH(pii_pq_wrapped_key) FROM securedb.users ORDER BY created_at")
        rows = cur.fetchall()
    missing = [uid for uid, alg, size in rows if not size]
    wrong = [f"{uid} ({alg})" for uid, alg, size in rows if size and alg != pq.PQ_ALG]
    evidence.json("pq-coverage", {"records": len(rows), "without_pq_wrap": missing, "wrong_suite": wrong,
                                  "expected_suite": pq.PQ_ALG})
    assert rows, "no records to check"
    assert not missing, f"{len(missing)} record(s) lack the post-quantum wrap: {', '.join(missing[:10])}"
    assert not wrong, f"records wrapped with another suite than {pq.PQ_ALG}: {', '.join(wrong[:10])}"


def test_pq_recovery_round_trip(required, target, session, tenants, evidence):
    client = client_for(target)
    try:
        pii = {"name": "PQ recovery probe", "email": "pq-probe@example.invalid", "phone": "+15550000000"}
        doc = client.encrypt_user(tenants["A"], pii, role="ztm-assessment")
        conn = session("app", tenant=tenants["A"])
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            from envelope.client import api_json

            cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
            cur.fetchall()
            cur.execute("SELECT * FROM v_users WHERE user_id = %s", (doc["user_id"],))
            row = cur.fetchone()
        private = pq_private_for(target)
        recovered = EnvelopeClient.recover_with_pq(row, private)
    finally:
        client.kms.close()
    evidence.json("pq-recovery", {"user_id": doc["user_id"], "pq_alg": row["pq_alg"],
                                  "wrap_bytes": len(row["pii_pq_wrapped_key"] or b""), "recovered": recovered == pii})
    assert recovered == pii, "the post-quantum wrap did not recover the record"
