"""ZTM-CRY-1: PII is encrypted in the client; the database never holds plaintext PII.

A record with unique sentinel PII is written through the envelope client and the API.
Then, reading as the admin: no table of the database holds a sentinel (raw, hex or base64),
and a finding names the table, column and row; the record decrypts in the client through
the KMS; the database's own content (every byte of the row) cannot decrypt it, while the
key-encryption key is not extractable from the HSM. Every recent stored record is checked
twice, separately: its data key unwraps through the KMS in the record's own context, and
each PII column is AES-256-GCM ciphertext that opens under that key (a column that holds
readable text is named as plaintext). No two of those records share a DEK (records of
format v2 each derive their own from the tenant's branch key and a salt of their own; a v1
DEK cached across records is named). Findings never quote the PII they found, nor keys.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pymysql
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope import branch
from envelope.client import PII_FIELDS, TABLE, api_json, open_column
from envelope.context import parse_header
from envelope.setup import client_for
from ztm.errors import UserError
from ztm.keep_out import keep_out_of_bundle
from ztm.resources.records import SentinelRecord, record, table_rows
from ztm.resources.records import recent_records as newest_records
from ztm.resources.schema_objects import SchemaObjects

pytestmark = [pytest.mark.control("ZTM-CRY-1"), pytest.mark.needs("data_plane", "login.app")]

GCM_TAG_BYTES = 16


@pytest.fixture(scope="module")
def envelope(target):
    if not target.section("kms"):
        pytest.skip("the target has no [kms] section: client-side encryption cannot be exercised")
    client = client_for(target)
    yield client
    client.kms.close()


@pytest.fixture(scope="module")
def sentinel_record(target, tenants, envelope, pytestconfig, data_plane):
    """One record written exactly as an application would: encrypt here, store via the API."""
    from ztm.db import connect

    marker = uuid.uuid4().hex[:12].upper()
    pii = {"name": f"ZTM SENTINEL {marker}", "email": f"sentinel-{marker}@example.invalid",
           "phone": f"+1555{int(marker[:6], 16) % 10**7:07d}"}
    keep_out_of_bundle(pytestconfig, *pii.values())  # a failure message naming it is redacted in the bundle
    doc = envelope.encrypt_user(tenants["A"], pii, role="ztm-assessment")
    conn = connect(target, target.role("app"), database=target.database)
    try:
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenants["A"],))
            cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
            cur.fetchall()
    finally:
        conn.close()
    return SentinelRecord(pii, doc["user_id"], tenants["A"])


def _needles(pii: dict[str, str]) -> dict[str, bytes]:
    """Each sentinel as it could be stored: raw, hex (either case) or base64. Labels name the
    field, never the value."""
    needles = {}
    for name, value in pii.items():
        raw = value.encode()
        for encoding, needle in (("raw", raw), ("hex", raw.hex().encode()), ("HEX", raw.hex().upper().encode()),
                                 ("base64", base64.b64encode(raw))):
            needles[f"sentinel {name} ({encoding})"] = needle
    return needles


def test_sentinel_pii_never_appears_in_plaintext(target, admin, sentinel_record, evidence):
    needles = _needles(sentinel_record.pii)
    found: set[str] = set()
    scanned = dict.fromkeys(SchemaObjects(admin, target.database).base_tables, 0)
    for table, key, row in table_rows(admin, target.database):
        scanned[table] += 1
        found.update(f"{table}.{column} ({key}): {label}" for column, data in row.items()
                     for label, needle in needles.items() if needle in data)
    evidence.json("plaintext-scan", {"rows_scanned": scanned, "sentinels": len(needles), "found": sorted(found)})
    assert scanned, f"no base tables found in {target.database}: nothing was scanned"
    assert not found, "plaintext PII stored in the database: " + "; ".join(sorted(found)[:20])


def test_stored_record_decrypts_in_the_client_through_the_kms(session, sentinel_record, envelope, evidence):
    conn = session("app", tenant=sentinel_record.tenant)
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT * FROM v_users WHERE user_id = %s", (sentinel_record.user_id,))
        row = cur.fetchone()
    assert row is not None, "the sentinel record is not readable through v_users"
    calls = envelope.kms.calls
    plaintext = envelope.decrypt_user(row)
    evidence.json("round-trip", {"user_id": row["user_id"], "kms_key_id": row["pii_kms_key_id"],
                                 "key_version": row["pii_key_version"], "kms_calls": envelope.kms.calls - calls,
                                 "fields_match": plaintext == sentinel_record.pii})
    assert plaintext == sentinel_record.pii, "the record does not decrypt back to what the client wrote"
    assert envelope.kms.calls > calls, "decryption did not go through the KMS"


def test_database_content_alone_cannot_decrypt(target, admin, sentinel_record, envelope, evidence):
    row = record(admin, target.database, sentinel_record.user_id)
    assert row is not None, "the sentinel record is not in the database"
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


@pytest.fixture(scope="module")
def recent_records(target, policy, admin, data_plane) -> list[dict[str, Any]]:
    """The newest records, checked one by one (policy crypto.recent_records; all of them in a lab)."""
    return newest_records(admin, target.database, policy.crypto["recent_records"])


@pytest.fixture(scope="module")
def unwrapped(recent_records, envelope) -> dict[str, bytes | str]:
    """user_id -> the DEK unwrapped through the KMS, or why the KMS would not unwrap it."""
    result: dict[str, bytes | str] = {}
    for row in recent_records:
        try:
            result[row["user_id"]] = envelope.unwrap_dek(row)
        except (UserError, ValueError, KeyError) as exc:
            result[row["user_id"]] = str(exc)[:200]
    return result


def test_every_stored_dek_unwraps_through_the_kms(recent_records, unwrapped, evidence):
    """Each record's wrapped DEK opens through the KMS in the record's own tenant and key
    version: a record a client stored with a made-up, foreign or moved key does not."""
    refused = {uid: why for uid, why in unwrapped.items() if isinstance(why, str)}
    evidence.json("dek-unwrap", {"records": len(recent_records), "refused": refused})
    assert recent_records, f"no records stored in {TABLE}: nothing to check"
    assert not refused, (f"{len(refused)} stored record(s) carry a data key the KMS does not unwrap in the record's "
                         "context: " + "; ".join(f"{TABLE}.pii_wrapped_key of record {uid}: {why}"
                                                 for uid, why in list(refused.items())[:10]))


def _readable_text(data: bytes) -> bool:
    """Printable UTF-8: what plaintext looks like. (Only asked of a field that failed to open
    as ciphertext, so random ciphertext that happens to look printable is never accused.)"""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and text.isprintable()


def _field_finding(row: dict[str, Any], name: str, dek: bytes | str) -> str | None:
    ct = bytes(row[f"{name}_ct"])
    where = f"{TABLE}.{name} of record {row['user_id']}"
    if _readable_text(ct) or len(ct) < GCM_TAG_BYTES:
        if isinstance(dek, bytes) and _opens(dek, row, name):
            return None
        return f"{where} holds readable text ({len(ct)} bytes): plaintext, not AES-256-GCM ciphertext"
    if not isinstance(dek, bytes):
        return None  # its DEK does not unwrap: that test names the record
    if parse_header(bytes(row[f"{name}_aad"])) is None:
        return f"{where} has no envelope header (not written by an envelope client)"
    if not _opens(dek, row, name):
        return f"{where} does not open under the record's DEK in its own context (moved, altered, or another key)"
    return None


def _opens(dek: bytes, row: dict[str, Any], name: str) -> bool:
    try:
        open_column(dek, row, name)
    except UserError:
        return False
    return True


def test_every_stored_pii_field_is_ciphertext(recent_records, unwrapped, evidence):
    """Each PII column of each recent record is AES-256-GCM ciphertext that opens under the
    record's DEK with the AAD rebuilt from the row. A client that stores plaintext is caught
    here even when it wrapped a real DEK through the KMS."""
    findings = [f for row in recent_records for name in PII_FIELDS
                if (f := _field_finding(row, name, unwrapped[row["user_id"]])) is not None]
    evidence.json("fields-checked", {"records": len(recent_records), "fields": len(recent_records) * len(PII_FIELDS),
                                     "findings": findings})
    assert recent_records, f"no records stored in {TABLE}: nothing to check"
    assert not findings, f"{len(findings)} stored PII field(s) are not client-side ciphertext: " + "; ".join(
        findings[:10])


def test_no_two_records_share_a_dek(recent_records, unwrapped, evidence):
    """Each record's DEK (as unwrapped or derived above) is its own: one leaked DEK opens one
    record. Compared in memory; the evidence holds counts and record ids, never a key."""
    by_dek: dict[bytes, list[str]] = {}
    for user_id, dek in unwrapped.items():
        if isinstance(dek, bytes):
            by_dek.setdefault(dek, []).append(user_id)
    shared = sorted(sorted(ids) for ids in by_dek.values() if len(ids) > 1)
    salts = [parts[0] for row in recent_records
             if (parts := _branch_parts(row)) is not None and isinstance(unwrapped[row["user_id"]], bytes)]
    evidence.json("dek-uniqueness", {"records": len(recent_records), "deks_checked": sum(map(len, by_dek.values())),
                                     "distinct_deks": len(by_dek), "v2_records": len(salts),
                                     "distinct_salts": len(set(salts)), "shared": shared[:20]})
    assert by_dek, f"no record of {TABLE} has a DEK that unwraps: nothing to compare"
    assert not shared, (f"{len(shared)} DEK(s) each serve several records ({sum(map(len, shared))} records; one "
                        "leaked DEK opens them all): " + "; ".join(
                            f"{TABLE}.pii_wrapped_key of records {', '.join(ids[:5])}"
                            + (f" and {len(ids) - 5} more" if len(ids) > 5 else "") for ids in shared[:5]))


def _branch_parts(row: dict[str, Any]) -> tuple[bytes, bytes] | None:
    try:
        return branch.unpack(bytes(row["pii_wrapped_key"]))
    except UserError:
        return None
