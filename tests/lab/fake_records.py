"""Records for the project's own lab tests, encrypted for real by the lab's envelope client."""

from __future__ import annotations

from envelope.client import EnvelopeClient, api_json

PII = {"name": "Lab Test User", "email": "lab-test@example.invalid", "phone": "+15550000002"}


def lab_record(client: EnvelopeClient, tenant: str, user_id: str | None) -> str:
    return api_json(client.encrypt_user(tenant, PII, "ztm-test", user_id))
