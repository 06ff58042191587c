"""The shape of the data plane the controls expect (provision/sql/ builds it)."""

from __future__ import annotations

DATABASE = "securedb"
DEFINER_USER, DEFINER_HOST = "api_definer", "localhost"
DEFINER = f"{DEFINER_USER}@{DEFINER_HOST}"  # as information_schema names a definer
API_PROCEDURES = ("security_set_tenant", "app_create_user_encrypted", "app_open_account", "app_transfer",
                  "app_rewrap_user_key")
API_FUNCTIONS = ("get_tenant",)
TENANT_VIEWS = ("v_users", "v_accounts")
DATA_TABLES = ("tenants", "tenant_grants", "users", "accounts")
AUDIT_TABLES = ("audit_events", "audit_chain_head")
# Per-connection session state, not data: emptied at every start, never audited.
SESSION_TABLES = ("tenant_context",)
# Every other base table of DATABASE is data and must log each INSERT, UPDATE and DELETE.
AUDITED_EVENTS = ("INSERT", "UPDATE", "DELETE")
AUDIT_APPEND = "audit_append"
# Guard triggers that make audit_events append-only and keep the head honest: (table, timing, event).
AUDIT_GUARDS = (
    ("audit_events", "BEFORE", "INSERT"), ("audit_events", "BEFORE", "UPDATE"), ("audit_events", "BEFORE", "DELETE"),
    ("audit_chain_head", "BEFORE", "INSERT"), ("audit_chain_head", "BEFORE", "UPDATE"),
    ("audit_chain_head", "BEFORE", "DELETE"),
)
# The login roles of a target (schemas/target.schema.json requires each; admin is the break-glass path).
LOGIN_ROLES = ("app", "auditor", "migration", "probe")
# What each role may hold, and what the definer may hold on the audit tables, is policy
# (ztm.policy: grants.allowed, grants.definer_audit), not shape.
