"""API records with random bytes where a client would put ciphertext (no PII involved)."""

from __future__ import annotations

import base64
import json
import os


def fake_record(user_id: str, tenant_id: str | None = None) -> str:
    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).decode()

    doc: dict[str, object] = {"user_id": user_id, "role": "ztm-test", "pii_wrapped_key": b64(48),
                              "pii_kms_key_id": "test-only"}
    if tenant_id:
        doc["tenant_id"] = tenant_id
    for field in ("name", "email", "phone"):
        doc[field] = {"ct": b64(32), "iv": b64(12), "aad": b64(24)}
    return json.dumps(doc)
