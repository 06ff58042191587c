-- Least privilege. Every grant is re-asserted from scratch (REVOKE ALL first), so applying
-- this file also repairs drift. ${account_host} is the host part of the login accounts.
--
--   app_user   EXECUTE on the API procedures (and get_tenant), SELECT on the tenant views
--   auditor    SELECT on the audit tables, the data tables (ledger reconciliation: ciphertext
--              only) and the views, EXECUTE to choose a tenant
--   migration  DDL on the data tables only; nothing on the audit tables. No DROP: it would
--              empty a table without one audit event (TRUNCATE) and remove its audit triggers
--              with the table (DROP TABLE)
--   (api_definer's own grants: 025_definer_grants.sql)
USE ${database};

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.security_set_tenant TO 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.app_create_user_encrypted TO 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.app_open_account TO 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.app_transfer TO 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.app_rewrap_user_key TO 'app_user'@'${account_host}';
GRANT EXECUTE ON FUNCTION ${database}.get_tenant TO 'app_user'@'${account_host}';
GRANT SELECT ON ${database}.v_users TO 'app_user'@'${account_host}';
GRANT SELECT ON ${database}.v_accounts TO 'app_user'@'${account_host}';

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.audit_events TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.audit_chain_head TO 'auditor'@'${account_host}';
-- Ledger reconciliation (ZTM-AUD-4) reads every data row; PII columns hold only ciphertext.
GRANT SELECT ON ${database}.tenants TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.tenant_grants TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.users TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.accounts TO 'auditor'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.audit_guard_definitions TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.v_users TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.v_accounts TO 'auditor'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.security_set_tenant TO 'auditor'@'${account_host}';
GRANT EXECUTE ON FUNCTION ${database}.get_tenant TO 'auditor'@'${account_host}';

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'migration'@'${account_host}';
GRANT CREATE, ALTER, INDEX, REFERENCES ON ${database}.tenants TO 'migration'@'${account_host}';
GRANT CREATE, ALTER, INDEX, REFERENCES ON ${database}.tenant_grants TO 'migration'@'${account_host}';
GRANT CREATE, ALTER, INDEX, REFERENCES ON ${database}.users TO 'migration'@'${account_host}';
GRANT CREATE, ALTER, INDEX, REFERENCES ON ${database}.accounts TO 'migration'@'${account_host}';
