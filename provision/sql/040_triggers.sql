-- Triggers, all owned by api_definer.
--
-- Guards: audit_events accepts only rows that extend the head of their lane exactly (the
-- payload starting with that lane and seq) and refuses every UPDATE and DELETE; a lane's
-- head row only moves forward, one event at a time, to the hash of that event, and cannot
-- be deleted; no head row beyond the 64 lanes can be inserted. A trigger cannot see TRUNCATE or DROP:
-- privileges forbid those to every account but the break-glass admin (050_grants.sql),
-- and the off-host anchor makes the admin's tampering visible.
--
-- Audit: every INSERT, UPDATE and DELETE on a data table appends one event, to the lane of
-- its tenant (audit_append is given the row's tenant before and after), with the
-- before and after images, the tenant, the authenticated client (USER()) and the time.
-- Written out per table (no dynamic SQL): binary columns as HEX(), times as ISO 8601 in UTC
-- with a Z (audit_utc). The event time is SYSDATE(6), the server's clock when the row
-- changes: a client's SET timestamp moves NOW()/UTC_TIMESTAMP() but not SYSDATE() (unless
-- the server runs with --sysdate-is-now, which ZTM-CFG-1 forbids).
USE ${database};

DELIMITER //

DROP TRIGGER IF EXISTS audit_events_guard_insert //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER audit_events_guard_insert
  BEFORE INSERT ON audit_events FOR EACH ROW
BEGIN
  DECLARE v_seq BIGINT UNSIGNED;
  DECLARE v_head CHAR(64) CHARACTER SET ascii;
  SELECT seq, head_hash INTO v_seq, v_head FROM audit_chain_head WHERE lane = NEW.lane FOR UPDATE;
  IF v_seq IS NULL OR NEW.seq <> v_seq + 1 OR NEW.prev_hash <> v_head
     OR LEFT(NEW.payload, CHAR_LENGTH(CONCAT('{"lane": ', NEW.lane, ', "seq": ', NEW.seq, ', ')))
        <> CONCAT('{"lane": ', NEW.lane, ', "seq": ', NEW.seq, ', ')
     OR NEW.curr_hash <> SHA2(CONCAT(NEW.prev_hash, NEW.payload), 256) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_events is append-only: a new row must extend the head of its lane';
  END IF;
END //

DROP TRIGGER IF EXISTS audit_events_guard_update //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER audit_events_guard_update
  BEFORE UPDATE ON audit_events FOR EACH ROW
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_events is append-only: UPDATE refused' //

DROP TRIGGER IF EXISTS audit_events_guard_delete //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER audit_events_guard_delete
  BEFORE DELETE ON audit_events FOR EACH ROW
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_events is append-only: DELETE refused' //

DROP TRIGGER IF EXISTS audit_chain_head_guard_insert //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER audit_chain_head_guard_insert
  BEFORE INSERT ON audit_chain_head FOR EACH ROW
BEGIN
  IF NEW.seq <> 0 OR NEW.head_hash <> REPEAT('0', 64) OR NEW.lane >= 64 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_chain_head: only the genesis head of one of the 64 lanes can be inserted';
  END IF;
END //

DROP TRIGGER IF EXISTS audit_chain_head_guard_update //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER audit_chain_head_guard_update
  BEFORE UPDATE ON audit_chain_head FOR EACH ROW
BEGIN
  IF NEW.lane <> OLD.lane OR NEW.seq <> OLD.seq + 1
     OR NOT (NEW.head_hash <=> (SELECT curr_hash FROM audit_events WHERE lane = NEW.lane AND seq = NEW.seq)) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_chain_head moves only to the next event of its lane';
  END IF;
END //

DROP TRIGGER IF EXISTS audit_chain_head_guard_delete //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER audit_chain_head_guard_delete
  BEFORE DELETE ON audit_chain_head FOR EACH ROW
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_chain_head: DELETE refused' //

DROP TRIGGER IF EXISTS tenants_audit_insert //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER tenants_audit_insert
  AFTER INSERT ON tenants FOR EACH ROW
  CALL audit_append(NEW.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'tenants', 'op', 'INSERT', 'key', NEW.tenant_id, 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', NULL,
    'after', JSON_OBJECT(
        'tenant_id', NEW.tenant_id,
        'name', NEW.name,
        'created_at', audit_utc(NEW.created_at)))) //

DROP TRIGGER IF EXISTS tenants_audit_update //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER tenants_audit_update
  AFTER UPDATE ON tenants FOR EACH ROW
  CALL audit_append(OLD.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'tenants', 'op', 'UPDATE', 'key', NEW.tenant_id, 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'tenant_id', OLD.tenant_id,
        'name', OLD.name,
        'created_at', audit_utc(OLD.created_at)),
    'after', JSON_OBJECT(
        'tenant_id', NEW.tenant_id,
        'name', NEW.name,
        'created_at', audit_utc(NEW.created_at)))) //

DROP TRIGGER IF EXISTS tenants_audit_delete //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER tenants_audit_delete
  AFTER DELETE ON tenants FOR EACH ROW
  CALL audit_append(OLD.tenant_id, OLD.tenant_id, JSON_OBJECT(
    'table', 'tenants', 'op', 'DELETE', 'key', OLD.tenant_id, 'tenant', OLD.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'tenant_id', OLD.tenant_id,
        'name', OLD.name,
        'created_at', audit_utc(OLD.created_at)),
    'after', NULL)) //

DROP TRIGGER IF EXISTS tenant_grants_audit_insert //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER tenant_grants_audit_insert
  AFTER INSERT ON tenant_grants FOR EACH ROW
  CALL audit_append(NEW.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'tenant_grants', 'op', 'INSERT', 'key', CONCAT(NEW.user_name, '/', NEW.tenant_id), 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', NULL,
    'after', JSON_OBJECT(
        'user_name', NEW.user_name,
        'tenant_id', NEW.tenant_id))) //

DROP TRIGGER IF EXISTS tenant_grants_audit_update //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER tenant_grants_audit_update
  AFTER UPDATE ON tenant_grants FOR EACH ROW
  CALL audit_append(OLD.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'tenant_grants', 'op', 'UPDATE', 'key', CONCAT(NEW.user_name, '/', NEW.tenant_id), 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'user_name', OLD.user_name,
        'tenant_id', OLD.tenant_id),
    'after', JSON_OBJECT(
        'user_name', NEW.user_name,
        'tenant_id', NEW.tenant_id))) //

DROP TRIGGER IF EXISTS tenant_grants_audit_delete //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER tenant_grants_audit_delete
  AFTER DELETE ON tenant_grants FOR EACH ROW
  CALL audit_append(OLD.tenant_id, OLD.tenant_id, JSON_OBJECT(
    'table', 'tenant_grants', 'op', 'DELETE', 'key', CONCAT(OLD.user_name, '/', OLD.tenant_id), 'tenant', OLD.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'user_name', OLD.user_name,
        'tenant_id', OLD.tenant_id),
    'after', NULL)) //

DROP TRIGGER IF EXISTS users_audit_insert //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER users_audit_insert
  AFTER INSERT ON users FOR EACH ROW
  CALL audit_append(NEW.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'users', 'op', 'INSERT', 'key', NEW.user_id, 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', NULL,
    'after', JSON_OBJECT(
        'user_id', NEW.user_id,
        'tenant_id', NEW.tenant_id,
        'role', NEW.role,
        'name_ct', HEX(NEW.name_ct),
        'name_iv', HEX(NEW.name_iv),
        'name_aad', HEX(NEW.name_aad),
        'email_ct', HEX(NEW.email_ct),
        'email_iv', HEX(NEW.email_iv),
        'email_aad', HEX(NEW.email_aad),
        'phone_ct', HEX(NEW.phone_ct),
        'phone_iv', HEX(NEW.phone_iv),
        'phone_aad', HEX(NEW.phone_aad),
        'pii_wrapped_key', HEX(NEW.pii_wrapped_key),
        'pii_kms_key_id', NEW.pii_kms_key_id,
        'pii_key_version', NEW.pii_key_version,
        'pii_pq_wrapped_key', HEX(NEW.pii_pq_wrapped_key),
        'pq_alg', NEW.pq_alg,
        'created_at', audit_utc(NEW.created_at)))) //

DROP TRIGGER IF EXISTS users_audit_update //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER users_audit_update
  AFTER UPDATE ON users FOR EACH ROW
  CALL audit_append(OLD.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'users', 'op', 'UPDATE', 'key', NEW.user_id, 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'user_id', OLD.user_id,
        'tenant_id', OLD.tenant_id,
        'role', OLD.role,
        'name_ct', HEX(OLD.name_ct),
        'name_iv', HEX(OLD.name_iv),
        'name_aad', HEX(OLD.name_aad),
        'email_ct', HEX(OLD.email_ct),
        'email_iv', HEX(OLD.email_iv),
        'email_aad', HEX(OLD.email_aad),
        'phone_ct', HEX(OLD.phone_ct),
        'phone_iv', HEX(OLD.phone_iv),
        'phone_aad', HEX(OLD.phone_aad),
        'pii_wrapped_key', HEX(OLD.pii_wrapped_key),
        'pii_kms_key_id', OLD.pii_kms_key_id,
        'pii_key_version', OLD.pii_key_version,
        'pii_pq_wrapped_key', HEX(OLD.pii_pq_wrapped_key),
        'pq_alg', OLD.pq_alg,
        'created_at', audit_utc(OLD.created_at)),
    'after', JSON_OBJECT(
        'user_id', NEW.user_id,
        'tenant_id', NEW.tenant_id,
        'role', NEW.role,
        'name_ct', HEX(NEW.name_ct),
        'name_iv', HEX(NEW.name_iv),
        'name_aad', HEX(NEW.name_aad),
        'email_ct', HEX(NEW.email_ct),
        'email_iv', HEX(NEW.email_iv),
        'email_aad', HEX(NEW.email_aad),
        'phone_ct', HEX(NEW.phone_ct),
        'phone_iv', HEX(NEW.phone_iv),
        'phone_aad', HEX(NEW.phone_aad),
        'pii_wrapped_key', HEX(NEW.pii_wrapped_key),
        'pii_kms_key_id', NEW.pii_kms_key_id,
        'pii_key_version', NEW.pii_key_version,
        'pii_pq_wrapped_key', HEX(NEW.pii_pq_wrapped_key),
        'pq_alg', NEW.pq_alg,
        'created_at', audit_utc(NEW.created_at)))) //

DROP TRIGGER IF EXISTS users_audit_delete //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER users_audit_delete
  AFTER DELETE ON users FOR EACH ROW
  CALL audit_append(OLD.tenant_id, OLD.tenant_id, JSON_OBJECT(
    'table', 'users', 'op', 'DELETE', 'key', OLD.user_id, 'tenant', OLD.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'user_id', OLD.user_id,
        'tenant_id', OLD.tenant_id,
        'role', OLD.role,
        'name_ct', HEX(OLD.name_ct),
        'name_iv', HEX(OLD.name_iv),
        'name_aad', HEX(OLD.name_aad),
        'email_ct', HEX(OLD.email_ct),
        'email_iv', HEX(OLD.email_iv),
        'email_aad', HEX(OLD.email_aad),
        'phone_ct', HEX(OLD.phone_ct),
        'phone_iv', HEX(OLD.phone_iv),
        'phone_aad', HEX(OLD.phone_aad),
        'pii_wrapped_key', HEX(OLD.pii_wrapped_key),
        'pii_kms_key_id', OLD.pii_kms_key_id,
        'pii_key_version', OLD.pii_key_version,
        'pii_pq_wrapped_key', HEX(OLD.pii_pq_wrapped_key),
        'pq_alg', OLD.pq_alg,
        'created_at', audit_utc(OLD.created_at)),
    'after', NULL)) //

DROP TRIGGER IF EXISTS accounts_audit_insert //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER accounts_audit_insert
  AFTER INSERT ON accounts FOR EACH ROW
  CALL audit_append(NEW.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'accounts', 'op', 'INSERT', 'key', NEW.account_id, 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', NULL,
    'after', JSON_OBJECT(
        'account_id', NEW.account_id,
        'tenant_id', NEW.tenant_id,
        'user_id', NEW.user_id,
        'currency', NEW.currency,
        'balance', NEW.balance,
        'created_at', audit_utc(NEW.created_at)))) //

DROP TRIGGER IF EXISTS accounts_audit_update //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER accounts_audit_update
  AFTER UPDATE ON accounts FOR EACH ROW
  CALL audit_append(OLD.tenant_id, NEW.tenant_id, JSON_OBJECT(
    'table', 'accounts', 'op', 'UPDATE', 'key', NEW.account_id, 'tenant', NEW.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'account_id', OLD.account_id,
        'tenant_id', OLD.tenant_id,
        'user_id', OLD.user_id,
        'currency', OLD.currency,
        'balance', OLD.balance,
        'created_at', audit_utc(OLD.created_at)),
    'after', JSON_OBJECT(
        'account_id', NEW.account_id,
        'tenant_id', NEW.tenant_id,
        'user_id', NEW.user_id,
        'currency', NEW.currency,
        'balance', NEW.balance,
        'created_at', audit_utc(NEW.created_at)))) //

DROP TRIGGER IF EXISTS accounts_audit_delete //
CREATE DEFINER = 'api_definer'@'localhost' TRIGGER accounts_audit_delete
  AFTER DELETE ON accounts FOR EACH ROW
  CALL audit_append(OLD.tenant_id, OLD.tenant_id, JSON_OBJECT(
    'table', 'accounts', 'op', 'DELETE', 'key', OLD.account_id, 'tenant', OLD.tenant_id,
    'actor', USER(), 'at', audit_utc(SYSDATE(6)),
    'before', JSON_OBJECT(
        'account_id', OLD.account_id,
        'tenant_id', OLD.tenant_id,
        'user_id', OLD.user_id,
        'currency', OLD.currency,
        'balance', OLD.balance,
        'created_at', audit_utc(OLD.created_at)),
    'after', NULL)) //

DELIMITER ;
