-- What the locked owner of the routines, views and triggers needs, and nothing more:
-- read/write on the data tables, append on the audit trail (INSERT, no UPDATE/DELETE on
-- audit_events), the head row, the per-connection tenant context, and TRIGGER so that its
-- triggers may fire. Re-asserted from scratch on every run.
USE securedb;

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON securedb.tenants TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON securedb.tenant_grants TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON securedb.users TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON securedb.accounts TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, DELETE ON securedb.tenant_context TO 'api_definer'@'localhost';
GRANT SELECT, INSERT, TRIGGER ON securedb.audit_events TO 'api_definer'@'localhost';
GRANT SELECT, UPDATE, TRIGGER ON securedb.audit_chain_head TO 'api_definer'@'localhost';
GRANT EXECUTE ON securedb.* TO 'api_definer'@'localhost';
