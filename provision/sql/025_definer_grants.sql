-- What the locked owner of the routines, views and triggers needs, and nothing more:
-- read/write on the data tables, append on the audit trail (INSERT, no UPDATE/DELETE on
-- audit_events), the head row, the per-connection tenant context, and TRIGGER so that its
-- triggers may fire. Re-asserted from scratch on every run.
USE ${database};

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ${database}.tenants TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ${database}.tenant_grants TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ${database}.users TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ${database}.accounts TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, DELETE ON ${database}.tenant_context TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, TRIGGER ON ${database}.audit_events TO 'api_definer'@'localhost';
GRANT SELECT, UPDATE, TRIGGER ON ${database}.audit_chain_head TO 'api_definer'@'localhost';
GRANT EXECUTE ON ${database}.* TO 'api_definer'@'localhost';
-- Read-only: lets audit_definitions() see every table and view of the schema (a table the
-- definer holds nothing on would otherwise be invisible to the anchor's definition digest).
GRANT SHOW VIEW ON ${database}.* TO 'api_definer'@'localhost';
