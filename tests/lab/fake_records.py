"""Records for the project's own lab tests, encrypted for real by the lab's envelope client."""

from __future__ import annotations

import uuid

from envelope.client import EnvelopeClient, api_json
from ztm.db import connect

PII = {"name": "Lab Test User", "email": "lab-test@example.invalid", "phone": "+15550000002"}


def lab_record(client: EnvelopeClient, tenant: str, user_id: str | None) -> str:
    return api_json(client.encrypt_user(tenant, PII, "ztm-test", user_id))


def writer_accounts(cur, client: EnvelopeClient, tenant: str, opening: int = 1000) -> list[str]:
    """Set the tenant, create one user through the API and open two accounts for it (3 events)."""
    cur.execute("CALL security_set_tenant(%s)", (tenant,))
    user_id = str(uuid.uuid4())
    cur.execute("CALL app_create_user_encrypted(%s)", (lab_record(client, tenant, user_id),))
    cur.fetchall()
    accounts = []
    for _ in range(2):
        cur.execute("CALL app_open_account(%s, 'EUR', %s)", (user_id, opening))
        accounts.append(cur.fetchall()[0][0])
    return accounts


def app_in_tenant(target, tenant: str):
    """A new app connection to the data plane with ``tenant`` set."""
    conn = connect(target, target.roles["app"], database=target.database)
    with conn.cursor() as cur:
        cur.execute("CALL security_set_tenant(%s)", (tenant,))
    return conn


def load_tenants(admin, user_name: str, count: int, database: str = "securedb") -> list[str]:
    """``count`` more tenants (deterministic ids, created once, audited like any write) granted
    to ``user_name``: writers of several tenants spread over several audit lanes."""
    import uuid

    tenants = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"load-tenant-{i}.ztm.lab")) for i in range(count)]
    with admin.cursor() as cur:
        for i, tenant in enumerate(tenants):
            cur.execute(f"INSERT IGNORE INTO `{database}`.tenants (tenant_id, name) VALUES (%s, %s)",
                        (tenant, f"load tenant {i}"))
            cur.execute(f"INSERT IGNORE INTO `{database}`.tenant_grants (user_name, tenant_id) VALUES (%s, %s)",
                        (user_name, tenant))
    admin.commit()
    return tenants
