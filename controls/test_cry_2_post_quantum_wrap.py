"""ZTM-CRY-2: when the target requires it, every record's DEK also carries a post-quantum
hybrid wrap (HPKE, ML-KEM-768 + X25519, HKDF-SHA256, AES-256-GCM), and that wrap alone
recovers the record.

Checked: every record carries a wrap naming the expected suite; the organisation PQ private
key is stored wrapped by the KMS under its own KEK (not the DEK KEK, which break-glass must
not need); a sample of stored records is recovered through the PQ path alone (decapsulate
with that private key, open every field); a fresh record round-trips through it.
"""

from __future__ import annotations

import pymysql
import pytest

from envelope import pq
from envelope.client import EnvelopeClient, api_json
from envelope.context import wrap_context
from envelope.record import new_dek
from envelope.setup import client_for, pq_private_for
from ztm.errors import UserError
from ztm.resources.records import dek_kek_ids, pq_coverage, pq_sample

pytestmark = pytest.mark.control("ZTM-CRY-2")


@pytest.fixture(scope="module")
def required(target):
    if not target.section("crypto"):
        pytest.skip("not assessed: the target has no [crypto] section, so it declares no post-quantum wrap "
                    "([crypto].require_pq) to check")
    if not target.section("crypto").get("require_pq"):
        pytest.skip("the target does not require post-quantum wraps ([crypto].require_pq is false)")


@pytest.fixture(scope="module")
def pq_private(required, target) -> bytes | str:
    """The organisation PQ private key unwrapped through the KMS, or why it could not be."""
    try:
        return pq_private_for(target)
    except UserError as exc:
        return str(exc)


def test_every_record_carries_the_expected_pq_wrap(required, target, admin, evidence):
    rows = pq_coverage(admin, target.database)
    missing = [uid for uid, alg, size in rows if not size]
    wrong = [f"{uid} ({alg})" for uid, alg, size in rows if size and alg != pq.PQ_ALG]
    evidence.json("pq-coverage", {"records": len(rows), "without_pq_wrap": missing, "wrong_suite": wrong,
                                  "expected_suite": pq.PQ_ALG})
    assert rows, "no records to check"
    assert not missing, f"{len(missing)} record(s) lack the post-quantum wrap: {', '.join(missing[:10])}"
    assert not wrong, f"records wrapped with another suite than {pq.PQ_ALG}: {', '.join(wrong[:10])}"


def test_pq_private_key_is_wrapped_under_its_own_kek(required, target, admin, pq_private, evidence):
    """Break-glass recovery exists for when the DEK KEK is unavailable: the PQ private key
    must not be wrapped by that same KEK."""
    path = target.section("crypto").get("pq_private_wrapped")
    assert path, "the target names no wrapped PQ private key ([crypto].pq_private_wrapped): PQ recovery is unproven"
    pq_kek = pq.read_private_wrapped(target.resolve(path)).key_id
    dek_keks = dek_kek_ids(admin, target.database)
    client = client_for(target, cache=False, with_pq=False)
    try:  # the KEK new records are wrapped under, even if no record uses it yet
        dek_keks.add(client.kms.wrap(new_dek(), wrap_context(tenant="ztm-probe", table="users", key_version=1)).key_id)
    finally:
        client.kms.close()
    evidence.json("pq-private-key", {"wrapped_under": pq_kek, "dek_keks": sorted(dek_keks),
                                     "unwrapped_through_kms": isinstance(pq_private, bytes)})
    assert pq_kek not in dek_keks, (f"the PQ private key is wrapped under the DEK KEK {pq_kek}: losing that KEK "
                                    "loses the post-quantum recovery path too ([crypto].pq_kek names its own key)")
    assert isinstance(pq_private, bytes), f"the PQ private key does not unwrap through the KMS: {pq_private}"


def test_stored_records_recover_through_the_pq_path(required, target, policy, admin, pq_private, evidence):
    """The PQ path alone (no DEK KEK): decapsulate each sampled record's wrap with the
    organisation private key and open every field in the record's own context. The sample:
    the newest records plus a random spread of older ones (policy crypto.pq_sample_*)."""
    assert isinstance(pq_private, bytes), f"the PQ private key does not unwrap through the KMS: {pq_private}"
    rows = pq_sample(admin, target.database, policy.crypto["pq_sample_newest"], policy.crypto["pq_sample_random_older"])
    failures = {}
    for row in rows:
        try:
            EnvelopeClient.recover_with_pq(row, pq_private)
        except UserError as exc:
            failures[row["user_id"]] = str(exc)[:200]
    evidence.json("pq-recovery-sample", {"sampled": len(rows), "records": [r["user_id"] for r in rows],
                                         "not_recovered": failures})
    assert rows, "no records with a post-quantum wrap to recover"
    assert not failures, (f"{len(failures)} of {len(rows)} sampled record(s) do not recover through the "
                          "post-quantum wrap: " + "; ".join(f"{u}: {w}" for u, w in list(failures.items())[:10]))


@pytest.mark.needs("login.app")
def test_pq_recovery_round_trip(required, target, session, tenants, pq_private, evidence):
    assert isinstance(pq_private, bytes), f"the PQ private key does not unwrap through the KMS: {pq_private}"
    client = client_for(target)
    try:
        pii = {"name": "PQ recovery probe", "email": "pq-probe@example.invalid", "phone": "+15550000000"}
        doc = client.encrypt_user(tenants["A"], pii, role="ztm-assessment")
    finally:
        client.kms.close()
    conn = session("app", tenant=tenants["A"])
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
        cur.fetchall()
        cur.execute("SELECT * FROM v_users WHERE user_id = %s", (doc["user_id"],))
        row = cur.fetchone()
    recovered = EnvelopeClient.recover_with_pq(row, pq_private)
    evidence.json("pq-recovery", {"user_id": doc["user_id"], "pq_alg": row["pq_alg"],
                                  "wrap_bytes": len(row["pii_pq_wrapped_key"] or b""), "recovered": recovered == pii})
    assert recovered == pii, "the post-quantum wrap did not recover the record"
