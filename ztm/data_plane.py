"""The shape of the data plane the controls expect (provision/sql/ builds it)."""

from __future__ import annotations

DATABASE = "securedb"
DEFINER_USER, DEFINER_HOST = "api_definer", "localhost"
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
# What each login role may hold, as (privilege, object kind, object) with objects in DATABASE.
ALLOWED_GRANTS: dict[str, set[tuple[str, str, str]]] = {
    "app": {("EXECUTE", "PROCEDURE", p) for p in API_PROCEDURES}
    | {("EXECUTE", "FUNCTION", f) for f in API_FUNCTIONS}
    | {("SELECT", "TABLE", v) for v in TENANT_VIEWS},
    "auditor": {("SELECT", "TABLE", t) for t in (*AUDIT_TABLES, *DATA_TABLES, *TENANT_VIEWS)}
    | {("EXECUTE", "PROCEDURE", "security_set_tenant"), ("EXECUTE", "FUNCTION", "get_tenant"),
       ("EXECUTE", "PROCEDURE", "audit_definitions")},
    # No standing DDL: ALTER rewrites rows without a trigger, DROP/TRUNCATE delete without one and take
    # triggers along. Schema changes run as the break-glass admin and are declared in an anchor.
    "migration": set(),
}
# What the locked definer may hold on the audit tables: append, move the head, fire triggers.
DEFINER_AUDIT_GRANTS = {("SELECT", "audit_events"), ("INSERT", "audit_events"), ("TRIGGER", "audit_events"),
                        ("SELECT", "audit_chain_head"), ("UPDATE", "audit_chain_head"),
                        ("TRIGGER", "audit_chain_head")}
