"""ZTM-CRY-1 and ZTM-CRY-2 fail, and say why, when the lab is broken the way each exists to
catch: a client that stores plaintext (with a made-up key, with a real KMS-wrapped DEK, or
through a broken client library), a record without its PQ wrap, a corrupt PQ wrap, a wrong
suite name, a PQ private key wrapped under the DEK KEK. Offending records are removed
afterwards (as the admin)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest
import tomli_w

from envelope import pq
from envelope.cache import DekCache
from envelope.client import EnvelopeClient
from envelope.setup import client_for, pq_private_for
from ztm.db import connect

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

PII = {"name": "Carol Plaintext", "email": "carol@example.invalid", "phone": "+15551234567"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def write_record(lab, lab_target):
    """``write(doc)``: store a document through the API as a (misbehaving) client would."""
    written: list[str] = []
    tenant = lab_target.raw["tenants"]["granted"][0]

    def write(doc: dict) -> str:
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        try:
            with conn.cursor() as cur:
                cur.execute("CALL security_set_tenant(%s)", (tenant,))
                cur.execute("CALL app_create_user_encrypted(%s)", (json.dumps(doc),))
                cur.fetchall()
        finally:
            conn.close()
        written.append(doc["user_id"])
        return doc["user_id"]

    yield tenant, write
    with lab.admin() as conn, conn.cursor() as cur:
        for user_id in written:
            cur.execute("DELETE FROM securedb.users WHERE user_id = %s", (user_id,))


@pytest.fixture(scope="module")
def real_client(lab_target):
    client = client_for(lab_target)
    yield client
    client.kms.close()


def test_cry1_fails_when_a_client_stores_plaintext_under_a_made_up_key(write_record, control):
    tenant, write = write_record
    user_id = str(uuid.uuid4())
    doc = {"user_id": user_id, "tenant_id": tenant, "role": "careless-client", "pii_kms_key_id": "none",
           "pii_wrapped_key": b64(os.urandom(32))}
    for field, value in PII.items():
        doc[field] = {"ct": b64(value.encode()), "iv": b64(os.urandom(12)), "aad": b64(b"none")}
    write(doc)
    run = control("ZTM-CRY-1")
    run.assert_failed("test_every_stored_dek_unwraps_through_the_kms", "does not unwrap", user_id)
    run.assert_failed("test_every_stored_pii_field_is_ciphertext", f"users.email of record {user_id}", "plaintext")


def test_cry1_plaintext_with_a_real_kms_wrapped_dek_is_named_by_table_column_record(write_record, real_client,
                                                                                    control):
    """The client wraps a genuine DEK through the KMS but stores the PII itself: the DEK check
    passes, so only the field check can catch it, and it names every column."""
    tenant, write = write_record
    doc = real_client.encrypt_user(tenant, PII, "careless-client")
    for field, value in PII.items():
        doc[field]["ct"] = b64(value.encode())
    user_id = write(doc)
    run = control("ZTM-CRY-1")
    assert run.outcome("test_every_stored_dek_unwraps_through_the_kms").outcome == "passed"
    message = run.assert_failed("test_every_stored_pii_field_is_ciphertext", "plaintext, not AES-256-GCM ciphertext",
                                *(f"users.{field} of record {user_id} holds readable text" for field in PII))
    assert all(value not in message for value in PII.values()), "the finding quotes the PII it found"


def test_cry1_sentinel_scan_names_table_column_and_row_of_a_leak(lab, control):
    """A client library that stores plaintext (loaded into the control run as a plugin): the
    control's own sentinel record is found raw in users and hex-encoded in the audit trail."""
    run = control("ZTM-CRY-1", extra=("-p", "tests.lab.leaky_envelope_plugin"))
    try:
        message = run.assert_failed("test_sentinel_pii_never_appears_in_plaintext", "plaintext PII stored",
                                    "users.name_ct (user_id=", "sentinel name (raw)",
                                    "audit_events.payload (lane=", "sentinel email (HEX)")
        assert "ZTM SENTINEL" not in message, "the finding quotes the PII it found"
        run.assert_failed("test_every_stored_pii_field_is_ciphertext", "holds readable text")
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM securedb.users WHERE name_ct LIKE 'ZTM SENTINEL %'")


def test_cry1_fails_when_two_records_share_a_dek(write_record, real_client, control):
    """The old shape (v1) with its DEK cache: both records open, but under one DEK."""
    tenant, write = write_record
    legacy = EnvelopeClient(real_client.kms, real_client.pq_public, DekCache(), legacy_v1=True)
    ids = sorted(write(legacy.encrypt_user(tenant, PII, "dek-reusing-client")) for _ in range(2))
    run = control("ZTM-CRY-1")
    run.assert_failed("test_no_two_records_share_a_dek", "serve several records", f"{ids[0]}, {ids[1]}")
    assert run.outcome("test_every_stored_pii_field_is_ciphertext").outcome == "passed"  # they do open


def test_cry2_fails_for_a_record_without_its_pq_wrap(lab_target, write_record, control):
    tenant, write = write_record
    client = client_for(lab_target, with_pq=False)
    try:
        user_id = write(client.encrypt_user(tenant, PII, "legacy-client"))
    finally:
        client.kms.close()
    run = control("ZTM-CRY-2")
    run.assert_failed("test_every_record_carries_the_expected_pq_wrap", "lack the post-quantum wrap", user_id)


def test_cry2_fails_for_a_corrupt_pq_wrap(write_record, real_client, control):
    """The wrap is present and names the right suite, so only the recovery catches it."""
    tenant, write = write_record
    doc = real_client.encrypt_user(tenant, PII, "bit-flipping-client")
    wrap = bytearray(base64.b64decode(doc["pii_pq_wrapped_key"]))
    wrap[-5] ^= 0x40  # inside the AES-256-GCM part of the HPKE output
    doc["pii_pq_wrapped_key"] = b64(bytes(wrap))
    user_id = write(doc)
    run = control("ZTM-CRY-2")
    assert run.outcome("test_every_record_carries_the_expected_pq_wrap").outcome == "passed"
    run.assert_failed("test_stored_records_recover_through_the_pq_path", "do not recover through the post-quantum",
                      f"{user_id}: the post-quantum wrap does not open")


def test_cry2_fails_for_a_wrong_suite_name(write_record, real_client, control):
    tenant, write = write_record
    doc = real_client.encrypt_user(tenant, PII, "mislabelling-client")
    doc["pq_alg"] = "HPKE-X25519-HKDF-SHA256-AES-128-GCM"  # a classical-only suite
    user_id = write(doc)
    run = control("ZTM-CRY-2")
    run.assert_failed("test_every_record_carries_the_expected_pq_wrap", "another suite",
                      f"{user_id} (HPKE-X25519-HKDF-SHA256-AES-128-GCM)")
    run.assert_failed("test_stored_records_recover_through_the_pq_path", f"{user_id}: record {user_id} names PQ suite")


def test_cry2_fails_when_the_pq_private_key_is_wrapped_under_the_dek_kek(lab, lab_target, real_client, control,
                                                                          tmp_path):
    """A deployment that wraps the PQ private key with the DEK KEK (a copy of the lab target
    pointing at such a file): break-glass would die with the KEK it exists to survive."""
    wrapped = tmp_path / "pq-private.under-dek-kek.json"
    pq.save_private_wrapped(pq_private_for(lab_target), real_client.kms, wrapped)
    raw = json.loads(json.dumps(lab_target.raw))
    raw["crypto"].pop("pq_kek", None)
    raw["crypto"]["pq_private_wrapped"] = str(wrapped)
    target = tmp_path / "target.toml"
    target.write_text(tomli_w.dumps(raw))
    from tests.control_runner import run_control

    run = run_control(Path(target), "ZTM-CRY-2")
    run.assert_failed("test_pq_private_key_is_wrapped_under_its_own_kek",
                      "wrapped under the DEK KEK pkcs11:token=ztm-kms;object=ztm-kek-v1")
    assert run.outcome("test_stored_records_recover_through_the_pq_path").outcome == "passed"
