"""KEK rotation on the lab: every DEK of a tenant re-wrapped under a new KEK version through
the API; field ciphertext untouched; both the KMS path and the PQ path still open the
records, of both shapes (v2 branch-key records and v1 records made by the old code path);
one unwrap and one wrap per distinct key; a second run has nothing left to do; the audit
chain records it and stays intact."""

from __future__ import annotations

import pymysql
import pytest

from envelope import branch
from envelope.cache import DekCache
from envelope.client import EnvelopeClient
from envelope.rotate import rewrap_tenant
from envelope.setup import client_for, pq_private_for
from tests.lab.fake_records import PII, lab_record
from ztm.audit_chain import lane_of, verify_database
from ztm.db import connect

pytestmark = pytest.mark.lab


def test_kek_rotation_rewraps_without_touching_ciphertext(lab_target):
    tenant = lab_target.raw["tenants"]["granted"][1]
    client = client_for(lab_target)
    legacy = EnvelopeClient(client.kms, client.pq_public, DekCache(enabled=False), legacy_v1=True)
    app = connect(lab_target, lab_target.roles["app"], database="securedb")
    admin = connect(lab_target, lab_target.roles["admin"])
    try:
        with app.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            for _ in range(3):
                cur.execute("CALL app_create_user_encrypted(%s)", (lab_record(client, tenant, None),))
                cur.fetchall()
            for _ in range(2):  # the old shape, a fresh DEK each (CRY-1 holds no shared DEK in the lab)
                cur.execute("CALL app_create_user_encrypted(%s)", (lab_record(legacy, tenant, None),))
                cur.fetchall()

        def snapshot() -> dict[str, tuple]:
            with app.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SELECT * FROM v_users")
                return {r["user_id"]: r for r in cur.fetchall()}

        before = snapshot()
        plaintext_before = {uid: client.decrypt_user(row) for uid, row in before.items()}
        new_version = max(int(r["pii_key_version"]) for r in before.values()) + 1
        client.kms.create_kek(new_version)
        with admin.cursor() as cur:
            cur.execute("SELECT seq FROM securedb.audit_chain_head WHERE lane = %s", (lane_of(tenant),))
            (seq_before,) = cur.fetchone()  # the rewrap's events all go to the tenant's lane
        calls = client.kms.calls
        counts = rewrap_tenant(app, client, tenant, new_version)
        rewrap_calls = client.kms.calls - calls
        after = snapshot()
        again = rewrap_tenant(app, client, tenant, new_version)
        private = pq_private_for(lab_target)
        with admin.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM securedb.audit_events WHERE lane = %s AND seq > %s AND payload LIKE %s",
                        (lane_of(tenant), seq_before, '%"op": "UPDATE"%'))
            (audited,) = cur.fetchone()
        report = verify_database(admin)
        checks = {uid: (client.decrypt_user(row), EnvelopeClient.recover_with_pq(row, private))
                  for uid, row in after.items()}
    finally:
        app.close()
        admin.close()
        client.kms.close()
    assert all(kms_path == pq_path == plaintext_before[uid] for uid, (kms_path, pq_path) in checks.items())
    assert counts.rewrapped == len(before) and not counts.failed
    shapes = {uid: branch.unpack(bytes(row["pii_wrapped_key"])) is not None for uid, row in before.items()}
    assert sum(shapes.values()) >= 3 and not all(shapes.values()), "the tenant should hold both record shapes"
    # One unwrap and one wrap per distinct key: each branch key once, each v1 DEK once.
    distinct = {branch.unpack(bytes(r["pii_wrapped_key"]))[1] if shapes[u] else bytes(r["pii_wrapped_key"])
                for u, r in before.items()}
    assert rewrap_calls == 2 * len(distinct), (rewrap_calls, len(distinct))
    assert again.rewrapped == 0 and again.already_current == len(before)
    for user_id, row in after.items():
        assert int(row["pii_key_version"]) == new_version
        if shapes[user_id]:  # v2: the salt stays, the branch key's wrap changes
            assert branch.unpack(bytes(row["pii_wrapped_key"]))[0] == \
                branch.unpack(bytes(before[user_id]["pii_wrapped_key"]))[0]
        assert all(row[f"{f}_{p}"] == before[user_id][f"{f}_{p}"] for f in PII for p in ("ct", "iv", "aad"))
        assert row["pii_wrapped_key"] != before[user_id]["pii_wrapped_key"]
    assert audited >= len(before), "the re-wraps are not in the audit trail"
    assert report.intact, report.describe()
