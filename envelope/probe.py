"""Records the assessment writes through the API (ZTM-TEN-1, ZTM-AUD-1): encrypted by the
target's own envelope client when it names a KMS, so every record the controls leave behind
is one ZTM-CRY-1 can open; without a KMS, random bytes stand in for ciphertext (the controls
that use them do not read it, and ZTM-CRY-1 is then not assessed)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from envelope.client import api_json
from envelope.setup import client_for

PROBE_PII = {"name": "assessment probe", "email": "probe@example.invalid", "phone": "+15550000001"}


def assessment_record(target: Any, tenant: str, user_id: str) -> str:
    """The JSON app_create_user_encrypted takes, for a new assessment user in ``tenant``."""
    if target.section("kms"):
        client = client_for(target)
        try:
            return api_json(client.encrypt_user(tenant, PROBE_PII, "ztm-assessment", user_id))
        finally:
            client.kms.close()

    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).decode()

    doc = {"user_id": user_id, "tenant_id": tenant, "role": "ztm-assessment", "pii_wrapped_key": b64(48),
           "pii_kms_key_id": "assessment-probe"}
    for field in ("name", "email", "phone"):
        doc[field] = {"ct": b64(32), "iv": b64(12), "aad": b64(24)}
    return json.dumps(doc)
