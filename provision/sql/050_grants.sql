-- Least privilege. Every grant is re-asserted from scratch (REVOKE ALL first), so applying
-- this file also repairs drift. ${account_host} is the host part of the login accounts.
--
--   app_user   EXECUTE on the API procedures (and get_tenant), SELECT on the tenant views
--   auditor    SELECT on the audit tables, the data tables (ledger reconciliation: ciphertext
--              only) and the views, EXECUTE to choose a tenant
--   migration  nothing standing. A schema change can rewrite data without firing a trigger
--              (ALTER TABLE ... DROP COLUMN, ADD COLUMN ... DEFAULT), drop a constraint or
--              take triggers along, so no login account holds DDL: a change runs as the
--              break-glass admin in a declared window and is declared in a new anchor
--              ('ztm anchor once --ddl-change REASON'); ZTM-AUD-3 names any undeclared
--              definition change and ZTM-AUD-4 any data it rewrote (README: schema changes)
--   (api_definer's own grants: 025_definer_grants.sql)
USE ${database};

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.security_set_tenant TO 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.app_create_user_encrypted TO 'app_user'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.app_create_users_encrypted TO 'app_user'@'${account_host}';
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
GRANT EXECUTE ON PROCEDURE ${database}.audit_definitions TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.v_users TO 'auditor'@'${account_host}';
GRANT SELECT ON ${database}.v_accounts TO 'auditor'@'${account_host}';
GRANT EXECUTE ON PROCEDURE ${database}.security_set_tenant TO 'auditor'@'${account_host}';
GRANT EXECUTE ON FUNCTION ${database}.get_tenant TO 'auditor'@'${account_host}';

REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'migration'@'${account_host}';
