"""KEK rotation on the lab: every DEK of a tenant re-wrapped under a new KEK version through
the API; field ciphertext untouched; both the KMS path and the PQ path still open the
records; a second run has nothing left to do; the audit chain records it and stays intact."""

from __future__ import annotations

import pymysql
import pytest

from envelope.client import EnvelopeClient
from envelope.rotate import rewrap_tenant
from envelope.setup import client_for, pq_private_for
from tests.lab.fake_records import PII, lab_record
from ztm.audit_chain import verify_database
from ztm.db import connect

pytestmark = pytest.mark.lab


def test_kek_rotation_rewraps_without_touching_ciphertext(lab_target):
    tenant = lab_target.raw["tenants"]["granted"][1]
    client = client_for(lab_target)
    app = connect(lab_target, lab_target.roles["app"], database="securedb")
    admin = connect(lab_target, lab_target.roles["admin"])
    try:
        with app.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            for _ in range(3):
                cur.execute("CALL app_create_user_encrypted(%s)", (lab_record(client, tenant, None),))
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
            cur.execute("SELECT MAX(seq) FROM securedb.audit_events")
            (seq_before,) = cur.fetchone()
        counts = rewrap_tenant(app, client, tenant, new_version)
        after = snapshot()
        again = rewrap_tenant(app, client, tenant, new_version)
        private = pq_private_for(lab_target)
        with admin.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM securedb.audit_events WHERE seq > %s AND payload LIKE %s",
                        (seq_before, '%"op": "UPDATE"%'))
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
    assert again.rewrapped == 0 and again.already_current == len(before)
    for user_id, row in after.items():
        assert int(row["pii_key_version"]) == new_version
        assert all(row[f"{f}_{p}"] == before[user_id][f"{f}_{p}"] for f in PII for p in ("ct", "iv", "aad"))
        assert row["pii_wrapped_key"] != before[user_id]["pii_wrapped_key"]
    assert audited >= len(before), "the re-wraps are not in the audit trail"
    assert report.intact, report.describe()
