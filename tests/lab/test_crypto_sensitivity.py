"""ZTM-CRY-1 and ZTM-CRY-2 fail, and say why, when a client stores plaintext or a record
without its post-quantum wrap. The offending record is removed afterwards (as the admin)."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from envelope.client import api_json
from envelope.setup import client_for
from ztm.db import connect

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]


@pytest.fixture
def write_record(lab, lab_target):
    written: list[str] = []
    tenant = lab_target.raw["tenants"]["granted"][0]

    def write(doc_json: str, user_id: str) -> None:
        conn = connect(lab_target, lab_target.roles["app"], database="securedb")
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
            cur.execute("CALL app_create_user_encrypted(%s)", (doc_json,))
        conn.close()
        written.append(user_id)

    yield tenant, write
    with lab.admin() as conn, conn.cursor() as cur:
        for user_id in written:
            cur.execute("DELETE FROM securedb.users WHERE user_id = %s", (user_id,))


def test_cry1_fails_when_a_client_stores_plaintext(write_record, control):
    tenant, write = write_record
    user_id = str(uuid.uuid4())

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {"user_id": user_id, "tenant_id": tenant, "role": "careless-client", "pii_kms_key_id": "none",
           "pii_wrapped_key": b64(os.urandom(32))}
    for field, value in (("name", "Carol Plaintext"), ("email", "carol@example.invalid"), ("phone", "+15551234567")):
        doc[field] = {"ct": b64(value.encode()), "iv": b64(os.urandom(12)), "aad": b64(b"none")}
    write(json.dumps(doc), user_id)
    run = control("ZTM-CRY-1")
    run.assert_failed("test_every_stored_record_is_envelope_ciphertext", "not client-side ciphertext", user_id)


def test_cry2_fails_for_a_record_without_its_pq_wrap(lab_target, write_record, control):
    tenant, write = write_record
    client = client_for(lab_target, with_pq=False)
    user_id = str(uuid.uuid4())
    try:
        write(api_json(client.encrypt_user(tenant, {"name": "No PQ", "email": "nopq@example.invalid",
                                                    "phone": "+15550000003"}, "legacy-client", user_id)), user_id)
    finally:
        client.kms.close()
    run = control("ZTM-CRY-2")
    run.assert_failed("test_every_record_carries_the_expected_pq_wrap", "lack the post-quantum wrap", user_id)
