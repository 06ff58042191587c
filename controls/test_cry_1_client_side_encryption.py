"""ZTM-CRY-1: PII is encrypted in the client; the database never holds plaintext PII.

A record with unique sentinel PII is written through the envelope client and the API.
Then, reading as the admin: no table of the database holds a sentinel (raw, hex or base64);
the record decrypts in the client through the KMS; and the database's own content (every
byte of the row) cannot decrypt it, while the key-encryption key is not extractable from
the HSM.
"""

from __future__ import annotations

import base64
import uuid

import pymysql
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope.client import api_json
from envelope.setup import client_for
from ztm.data_plane import DATABASE

pytestmark = pytest.mark.control("ZTM-CRY-1")


@pytest.fixture(scope="module")
def envelope(target):
    if not target.section("kms"):
        pytest.skip("the target has no [kms] section: client-side encryption cannot be exercised")
    client = client_for(target)
    yield client
    client.kms.close()


@pytest.fixture(scope="module")
def sentinel_record(target, tenants, envelope):
    """One record written exactly as an application would: encrypt here, store via the API."""
    from ztm.db import connect

    marker = uuid.uuid4().hex[:12].upper()
    pii = {"name": f"ZTM SENTINEL {marker}", "email": f"sentinel-{marker}@example.invalid",
           "phone": f"+1555{int(marker[:6], 16) % 10**7:07d}"}
    doc = envelope.encrypt_user(tenants["A"], pii, role="ztm-assessment")
    conn = connect(target, target.roles["app"], database=DATABASE)
    try:
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenants["A"],))
            cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
            cur.fetchall()
    finally:
        conn.close()
    return {"pii": pii, "user_id": doc["user_id"], "tenant": tenants["A"]}


def _needles(values: list[str]) -> dict[str, bytes]:
    needles = {}
    for value in values:
        raw = value.encode()
        needles[f"{value!r} raw"] = raw
        needles[f"{value!r} hex"] = raw.hex().encode()
        needles[f"{value!r} HEX"] = raw.hex().upper().encode()
        needles[f"{value!r} base64"] = base64.b64encode(raw)
    return needles


def _all_rows(admin) -> dict[str, list[tuple]]:
    with admin.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_TYPE = 'BASE TABLE'", (DATABASE,))
        tables = [t for (t,) in cur.fetchall()]
        rows = {}
        for table in tables:
            cur.execute(f"SELECT * FROM `{DATABASE}`.`{table}`")  # names from information_schema
            rows[table] = list(cur.fetchall())
    return rows


def test_sentinel_pii_never_appears_in_plaintext(admin, sentinel_record, evidence):
    needles = _needles(list(sentinel_record["pii"].values()))
    found = []
    rows = _all_rows(admin)
    for table, table_rows in rows.items():
        for row in table_rows:
            for value in row:
                data = value if isinstance(value, (bytes, bytearray)) else str(value).encode()
                found += [f"{table}: {label}" for label, needle in needles.items() if needle in data]
    evidence.json("plaintext-scan", {"tables": {t: len(r) for t, r in rows.items()}, "sentinels": len(needles),
                                     "found": sorted(set(found))})
    assert not found, "plaintext PII stored in the database: " + "; ".join(sorted(set(found)))


def test_stored_record_decrypts_in_the_client_through_the_kms(session, sentinel_record, envelope, evidence):
    conn = session("app", tenant=sentinel_record["tenant"])
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT * FROM v_users WHERE user_id = %s", (sentinel_record["user_id"],))
        row = cur.fetchone()
    assert row is not None, "the sentinel record is not readable through v_users"
    calls = envelope.kms.calls
    plaintext = envelope.decrypt_user(row)
    evidence.json("round-trip", {"user_id": row["user_id"], "kms_key_id": row["pii_kms_key_id"],
                                 "key_version": row["pii_key_version"], "kms_calls": envelope.kms.calls - calls,
                                 "fields_match": plaintext == sentinel_record["pii"]})
    assert plaintext == sentinel_record["pii"], "the record does not decrypt back to what the client wrote"
    assert envelope.kms.calls > calls, "decryption did not go through the KMS"


def test_database_content_alone_cannot_decrypt(admin, sentinel_record, envelope, evidence):
    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT * FROM securedb.users WHERE user_id = %s", (sentinel_record["user_id"],))
        row = cur.fetchone()
    material = b"".join(v for v in row.values() if isinstance(v, (bytes, bytearray)))
    candidates = {material[i:i + 32] for i in range(0, max(len(material) - 31, 0))}
    opened = []
    for key in candidates:
        try:
            AESGCM(key).decrypt(bytes(row["name_iv"]), bytes(row["name_ct"]), bytes(row["name_aad"]))
            opened.append(key.hex()[:16])
        except InvalidTag:
            continue
    kek = envelope.kms.kek_attributes(int(row["pii_key_version"])) if hasattr(envelope.kms, "kek_attributes") \
        else {}
    evidence.json("db-only-attempt", {"candidate_keys_tried": len(candidates), "opened": opened, "kek": kek})
    assert not opened, "a key found in the database row itself decrypts the PII: the DEK is stored unwrapped"
    if kek:
        assert not kek["extractable"] and kek["sensitive"], f"the KMS key-encryption key can leave the HSM: {kek}"


RECENT_RECORDS = 500


def test_every_stored_record_is_envelope_ciphertext(admin, envelope, evidence):
    """The most recent records (all of them in a lab) must decrypt through the KMS in their own
    context: a record some client stored in plaintext, or under another scheme, does not."""
    from envelope.client import EnvelopeClient

    with admin.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM securedb.users ORDER BY created_at DESC LIMIT {RECENT_RECORDS}")
        rows = cur.fetchall()
    failures = {}
    for row in rows:
        try:
            EnvelopeClient.decrypt_user(envelope, row)
        except Exception as exc:  # any failure to open is a finding about that record
            failures[row["user_id"]] = str(exc)[:200]
    evidence.json("records-checked", {"records": len(rows), "not_envelope_ciphertext": failures})
    assert rows, "no records stored: nothing to check"
    assert not failures, (f"{len(failures)} stored record(s) are not client-side ciphertext that opens in their "
                          "own context (plaintext or foreign encryption): " + ", ".join(list(failures)[:10]))
