-- Routines and views: all owned by the locked account api_definer and run with its
-- rights (SQL SECURITY DEFINER), so callers need EXECUTE/SELECT on them and nothing else.
-- No routine builds SQL at run time (no PREPARE/EXECUTE): ZTM-ACC-1 checks that.
USE ${database};

DELIMITER //

-- The tenant of this connection, or NULL. Bound to the connection (CONNECTION_ID()), to
-- the session (the random key security_set_tenant gave it in @ztm_tenant_session, which a
-- connection reset or change-user clears), to the authenticated user it was set by (USER():
-- the client's own identity even inside a definer routine) and to a grant that still exists.
DROP FUNCTION IF EXISTS get_tenant //
CREATE DEFINER = 'api_definer'@'localhost' FUNCTION get_tenant()
  RETURNS CHAR(36) CHARACTER SET ascii
  READS SQL DATA SQL SECURITY DEFINER
BEGIN
  RETURN (SELECT c.tenant_id FROM tenant_context c
          JOIN tenant_grants g ON g.tenant_id = c.tenant_id AND g.user_name = SUBSTRING_INDEX(USER(), '@', 1)
          WHERE c.connection_id = CONNECTION_ID() AND c.login_user = USER()
            AND c.session_key = @ztm_tenant_session);
END //

DROP PROCEDURE IF EXISTS security_set_tenant //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE security_set_tenant(IN p_tenant CHAR(36) CHARACTER SET ascii COLLATE ascii_bin)
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  SET @ztm_tenant_session = NULL;
  IF p_tenant IS NULL OR NOT EXISTS (
       SELECT 1 FROM tenant_grants
       WHERE user_name = SUBSTRING_INDEX(USER(), '@', 1) AND tenant_id = p_tenant) THEN
    DELETE FROM tenant_context WHERE connection_id = CONNECTION_ID();  -- a refused switch leaves no tenant
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'security_set_tenant: tenant not granted to this account';
  END IF;
  SET @ztm_tenant_session = RANDOM_BYTES(16);
  REPLACE INTO tenant_context (connection_id, login_user, tenant_id, session_key, set_at)
    VALUES (CONNECTION_ID(), USER(), p_tenant, @ztm_tenant_session, SYSDATE(6));
END //

-- JSON helpers for app_create_user_encrypted: a string member or NULL (JSON null, absent,
-- or another type), and its base64 decoding.
DROP FUNCTION IF EXISTS api_json_text //
CREATE DEFINER = 'api_definer'@'localhost' FUNCTION api_json_text(p_doc LONGTEXT, p_path VARCHAR(128))
  RETURNS LONGTEXT CHARACTER SET utf8mb4
  DETERMINISTIC NO SQL SQL SECURITY DEFINER
RETURN IF(JSON_TYPE(JSON_EXTRACT(p_doc, p_path)) = 'STRING', JSON_UNQUOTE(JSON_EXTRACT(p_doc, p_path)), NULL) //

DROP FUNCTION IF EXISTS api_json_bytes //
CREATE DEFINER = 'api_definer'@'localhost' FUNCTION api_json_bytes(p_doc LONGTEXT, p_path VARCHAR(128))
  RETURNS LONGBLOB
  DETERMINISTIC NO SQL SQL SECURITY DEFINER
RETURN FROM_BASE64(api_json_text(p_doc, p_path)) //

-- A local time of this session as UTC ISO 8601 with microseconds and a Z: how every time is
-- recorded in the trail, whatever time_zone the writing session chose.
DROP FUNCTION IF EXISTS audit_utc //
CREATE DEFINER = 'api_definer'@'localhost' FUNCTION audit_utc(p_local DATETIME(6))
  RETURNS CHAR(27) CHARACTER SET ascii NOT DETERMINISTIC NO SQL SQL SECURITY DEFINER
  RETURN DATE_FORMAT(CONVERT_TZ(p_local, @@session.time_zone, '+00:00'), '%Y-%m-%dT%H:%i:%s.%fZ') //

-- Appends one event to the lane of its tenant. Called by the data triggers with the row's
-- tenant before and after the change and the event body (a JSON object); prepends
-- {"lane": l, "seq": n, ...}, hashes exactly the stored text, moves that lane's head. A row
-- that changes tenant is refused: its key's events would be split over two lanes, with no
-- order between them. Lane = CRC32(tenant) MOD 64 (no tenant: lane 0), fixed at install.
DROP PROCEDURE IF EXISTS audit_append //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE audit_append(
    IN p_tenant_before CHAR(36) CHARACTER SET ascii, IN p_tenant CHAR(36) CHARACTER SET ascii, IN p_body LONGTEXT)
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  DECLARE v_lane SMALLINT UNSIGNED DEFAULT IF(p_tenant IS NULL, 0, CRC32(p_tenant) MOD 64);
  DECLARE v_seq BIGINT UNSIGNED;
  DECLARE v_prev CHAR(64) CHARACTER SET ascii;
  DECLARE v_payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
  DECLARE v_hash CHAR(64) CHARACTER SET ascii;
  IF NOT (p_tenant_before <=> p_tenant) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit: a row cannot move to another tenant (its events would leave their lane)';
  END IF;
  SELECT seq, head_hash INTO v_seq, v_prev FROM audit_chain_head WHERE lane = v_lane FOR UPDATE;
  SET v_seq = v_seq + 1;
  SET v_payload = CONCAT('{"lane": ', v_lane, ', "seq": ', v_seq, ', ', SUBSTRING(p_body, 2));
  SET v_hash = SHA2(CONCAT(v_prev, v_payload), 256);
  INSERT INTO audit_events (lane, seq, payload, prev_hash, curr_hash) VALUES (v_lane, v_seq, v_payload, v_prev, v_hash);
  UPDATE audit_chain_head SET seq = v_seq, head_hash = v_hash WHERE lane = v_lane;
END //

-- Create a user from the JSON the client-side envelope produces (ztm envelope encrypt):
-- {"user_id", "tenant_id"?, "role", "name"|"email"|"phone": {"ct","iv","aad"} (base64),
--  "pii_wrapped_key" (base64), "pii_kms_key_id", "pii_key_version"?,
--  "pii_pq_wrapped_key"? (base64), "pq_alg"?}
DROP PROCEDURE IF EXISTS app_create_user_encrypted //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE app_create_user_encrypted(IN p_user LONGTEXT)
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  DECLARE v_tenant CHAR(36) CHARACTER SET ascii DEFAULT get_tenant();
  DECLARE v_user_id CHAR(36) CHARACTER SET ascii;
  IF v_tenant IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_user_encrypted: no tenant context (call security_set_tenant)';
  END IF;
  IF p_user IS NULL OR NOT JSON_VALID(p_user) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_user_encrypted: the argument is not a JSON document';
  END IF;
  IF api_json_text(p_user, '$.tenant_id') IS NOT NULL AND api_json_text(p_user, '$.tenant_id') <> v_tenant THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_user_encrypted: record belongs to another tenant';
  END IF;
  SET v_user_id = api_json_text(p_user, '$.user_id');
  IF v_user_id IS NULL OR v_user_id NOT REGEXP '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_user_encrypted: user_id must be a lower-case UUID';
  END IF;
  IF api_json_bytes(p_user, '$.name.ct') IS NULL OR api_json_bytes(p_user, '$.email.ct') IS NULL
     OR api_json_bytes(p_user, '$.phone.ct') IS NULL OR api_json_bytes(p_user, '$.pii_wrapped_key') IS NULL
     OR api_json_text(p_user, '$.pii_kms_key_id') IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_user_encrypted: ciphertext, wrapped key or key id missing or not base64';
  END IF;
  INSERT INTO users (user_id, tenant_id, role,
                     name_ct, name_iv, name_aad, email_ct, email_iv, email_aad, phone_ct, phone_iv, phone_aad,
                     pii_wrapped_key, pii_kms_key_id, pii_key_version, pii_pq_wrapped_key, pq_alg)
  VALUES (v_user_id, v_tenant, COALESCE(api_json_text(p_user, '$.role'), 'user'),
          api_json_bytes(p_user, '$.name.ct'), api_json_bytes(p_user, '$.name.iv'), api_json_bytes(p_user, '$.name.aad'),
          api_json_bytes(p_user, '$.email.ct'), api_json_bytes(p_user, '$.email.iv'), api_json_bytes(p_user, '$.email.aad'),
          api_json_bytes(p_user, '$.phone.ct'), api_json_bytes(p_user, '$.phone.iv'), api_json_bytes(p_user, '$.phone.aad'),
          api_json_bytes(p_user, '$.pii_wrapped_key'), api_json_text(p_user, '$.pii_kms_key_id'),
          COALESCE(JSON_EXTRACT(p_user, '$.pii_key_version'), 1),
          api_json_bytes(p_user, '$.pii_pq_wrapped_key'), api_json_text(p_user, '$.pq_alg'));
  SELECT v_user_id AS user_id;
END //

-- Bulk load: a JSON array of documents as app_create_user_encrypted takes them, inserted in
-- one statement (set-based through JSON_TABLE: the audit triggers fire for every row) and
-- one transaction: all of them or none. Inside a caller's transaction it neither commits nor
-- rolls back the caller's work (a savepoint, as app_transfer). Returns the number inserted.
DROP PROCEDURE IF EXISTS app_create_users_encrypted //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE app_create_users_encrypted(IN p_users LONGTEXT)
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  DECLARE v_tenant CHAR(36) CHARACTER SET ascii DEFAULT get_tenant();
  DECLARE v_count INT UNSIGNED;
  DECLARE v_bad INT UNSIGNED;
  DECLARE v_in_caller_transaction BOOLEAN;
  DECLARE v_mode TINYINT DEFAULT 0;  -- 0 nothing written yet, 1 own transaction, 2 inside the caller's
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    IF v_mode = 1 THEN
      ROLLBACK;
    ELSEIF v_mode = 2 THEN
      BEGIN
        DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
        ROLLBACK TO SAVEPOINT ztm_bulk_users;
      END;
    END IF;
    RESIGNAL;
  END;
  IF v_tenant IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_users_encrypted: no tenant context (call security_set_tenant)';
  END IF;
  IF p_users IS NULL OR NOT JSON_VALID(p_users) OR JSON_TYPE(p_users) <> 'ARRAY' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_users_encrypted: the argument is not a JSON array';
  END IF;
  SET v_count = JSON_LENGTH(p_users);
  IF v_count = 0 OR v_count > 10000 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_users_encrypted: a batch holds 1 to 10000 records';
  END IF;
  -- Every element checked before anything is written; the same rules as the one-record call.
  SELECT COUNT(*) INTO v_bad FROM JSON_TABLE(p_users, '$[*]' COLUMNS (
      tenant_id TEXT PATH '$.tenant_id')) j
    WHERE j.tenant_id IS NOT NULL AND j.tenant_id <> v_tenant;
  IF v_bad > 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_users_encrypted: a record belongs to another tenant';
  END IF;
  SELECT COUNT(*) INTO v_bad FROM JSON_TABLE(p_users, '$[*]' COLUMNS (
      user_id TEXT PATH '$.user_id', name_ct TEXT PATH '$.name.ct', email_ct TEXT PATH '$.email.ct',
      phone_ct TEXT PATH '$.phone.ct', wrapped TEXT PATH '$.pii_wrapped_key', key_id TEXT PATH '$.pii_kms_key_id')) j
    WHERE j.user_id IS NULL OR j.user_id NOT REGEXP '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
       OR FROM_BASE64(j.name_ct) IS NULL OR FROM_BASE64(j.email_ct) IS NULL OR FROM_BASE64(j.phone_ct) IS NULL
       OR FROM_BASE64(j.wrapped) IS NULL OR j.key_id IS NULL;
  IF v_bad > 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_create_users_encrypted: a record lacks a lower-case UUID user_id, ciphertext, wrapped key or key id (or is not base64)';
  END IF;
  -- Never commit a caller's transaction (START TRANSACTION would) nor roll it back.
  CALL api_in_transaction(v_in_caller_transaction);
  IF v_in_caller_transaction THEN
    SAVEPOINT ztm_bulk_users;
    SET v_mode = 2;
  ELSE
    START TRANSACTION;
    SET v_mode = 1;
  END IF;
  INSERT INTO users (user_id, tenant_id, role,
                     name_ct, name_iv, name_aad, email_ct, email_iv, email_aad, phone_ct, phone_iv, phone_aad,
                     pii_wrapped_key, pii_kms_key_id, pii_key_version, pii_pq_wrapped_key, pq_alg)
  SELECT j.user_id, v_tenant, COALESCE(j.role, 'user'),
         FROM_BASE64(j.name_ct), FROM_BASE64(j.name_iv), FROM_BASE64(j.name_aad),
         FROM_BASE64(j.email_ct), FROM_BASE64(j.email_iv), FROM_BASE64(j.email_aad),
         FROM_BASE64(j.phone_ct), FROM_BASE64(j.phone_iv), FROM_BASE64(j.phone_aad),
         FROM_BASE64(j.wrapped), j.key_id, COALESCE(j.key_version, 1), FROM_BASE64(j.pq_wrapped), j.pq_alg
  FROM JSON_TABLE(p_users, '$[*]' COLUMNS (
      user_id CHAR(36) CHARACTER SET ascii PATH '$.user_id', role VARCHAR(64) PATH '$.role',
      name_ct TEXT PATH '$.name.ct', name_iv TEXT PATH '$.name.iv', name_aad TEXT PATH '$.name.aad',
      email_ct TEXT PATH '$.email.ct', email_iv TEXT PATH '$.email.iv', email_aad TEXT PATH '$.email.aad',
      phone_ct TEXT PATH '$.phone.ct', phone_iv TEXT PATH '$.phone.iv', phone_aad TEXT PATH '$.phone.aad',
      wrapped TEXT PATH '$.pii_wrapped_key', key_id VARCHAR(512) PATH '$.pii_kms_key_id',
      key_version INT UNSIGNED PATH '$.pii_key_version', pq_wrapped TEXT PATH '$.pii_pq_wrapped_key',
      pq_alg VARCHAR(64) PATH '$.pq_alg')) j;
  IF v_mode = 1 THEN
    COMMIT;
  ELSE
    RELEASE SAVEPOINT ztm_bulk_users;
  END IF;
  SELECT v_count AS inserted;
END //

DROP PROCEDURE IF EXISTS app_open_account //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE app_open_account(
    IN p_user_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin, IN p_currency CHAR(3), IN p_initial DECIMAL(19, 4))
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  DECLARE v_tenant CHAR(36) CHARACTER SET ascii DEFAULT get_tenant();
  DECLARE v_account CHAR(36) CHARACTER SET ascii DEFAULT UUID();
  IF v_tenant IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_open_account: no tenant context (call security_set_tenant)';
  END IF;
  IF p_initial IS NULL OR p_initial < 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_open_account: the opening balance must be zero or more';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM users WHERE user_id = p_user_id AND tenant_id = v_tenant) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_open_account: no such user in the current tenant';
  END IF;
  INSERT INTO accounts (account_id, tenant_id, user_id, currency, balance)
    VALUES (v_account, v_tenant, p_user_id, p_currency, p_initial);
  SELECT v_account AS account_id;
END //

-- Atomic transfer inside the current tenant; never makes a balance negative.
-- Ids are typed like the columns (ascii_bin): an untyped CHAR(36) is compared in the
-- connection's collation, so the primary key could not be used and FOR UPDATE would lock
-- every row it scanned.
-- Whether the calling session is inside a transaction (an explicit one, or any statement
-- with autocommit off). Under autocommit a SAVEPOINT is its own transaction and is gone at
-- once, so releasing it fails (1305); inside a transaction it is still there.
DROP PROCEDURE IF EXISTS api_in_transaction //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE api_in_transaction(OUT p_in_transaction BOOLEAN)
  NO SQL SQL SECURITY DEFINER
BEGIN
  DECLARE CONTINUE HANDLER FOR 1305 SET p_in_transaction = FALSE;
  SET p_in_transaction = TRUE;
  SAVEPOINT ztm_probe;
  RELEASE SAVEPOINT ztm_probe;
END //

DROP PROCEDURE IF EXISTS app_transfer //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE app_transfer(
    IN p_from CHAR(36) CHARACTER SET ascii COLLATE ascii_bin, IN p_to CHAR(36) CHARACTER SET ascii COLLATE ascii_bin,
    IN p_amount DECIMAL(19, 4))
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  DECLARE v_tenant CHAR(36) CHARACTER SET ascii DEFAULT get_tenant();
  DECLARE v_found INT DEFAULT 0;
  DECLARE v_balance DECIMAL(19, 4);
  DECLARE v_from_currency CHAR(3);
  DECLARE v_to_currency CHAR(3);
  DECLARE v_in_caller_transaction BOOLEAN;
  DECLARE v_mode TINYINT DEFAULT 0;  -- 0 nothing written yet, 1 own transaction, 2 inside the caller's
  -- Undo exactly this transfer: its own transaction, or back to its savepoint inside the
  -- caller's (whose earlier work stays). A deadlock has already rolled the whole caller
  -- transaction back and taken the savepoint with it: the original error is what surfaces.
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    IF v_mode = 1 THEN
      ROLLBACK;
    ELSEIF v_mode = 2 THEN
      BEGIN
        DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
        ROLLBACK TO SAVEPOINT ztm_transfer;
      END;
    END IF;
    RESIGNAL;
  END;
  IF v_tenant IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_transfer: no tenant context (call security_set_tenant)';
  END IF;
  IF p_amount IS NULL OR p_amount <= 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_transfer: the amount must be positive';
  END IF;
  IF p_from = p_to THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_transfer: source and destination are the same account';
  END IF;
  -- Never commit a caller's transaction (START TRANSACTION would) nor roll it back.
  CALL api_in_transaction(v_in_caller_transaction);
  IF v_in_caller_transaction THEN
    SAVEPOINT ztm_transfer;
    SET v_mode = 2;
  ELSE
    START TRANSACTION;
    SET v_mode = 1;
  END IF;
  -- Lock exactly these two rows, through the primary key and in its order: opposite
  -- transfers cannot deadlock, and a scan of the tenant index would lock other rows too.
  SELECT COUNT(*) INTO v_found FROM accounts FORCE INDEX (PRIMARY)
    WHERE account_id IN (p_from, p_to) AND tenant_id = v_tenant FOR UPDATE;
  IF v_found <> 2 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_transfer: account not found in the current tenant';
  END IF;
  SELECT balance, currency INTO v_balance, v_from_currency FROM accounts WHERE account_id = p_from FOR UPDATE;
  SELECT currency INTO v_to_currency FROM accounts WHERE account_id = p_to FOR UPDATE;
  IF v_from_currency <> v_to_currency THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_transfer: accounts hold different currencies';
  END IF;
  IF v_balance < p_amount THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_transfer: insufficient funds';
  END IF;
  UPDATE accounts SET balance = balance - p_amount WHERE account_id = p_from;
  UPDATE accounts SET balance = balance + p_amount WHERE account_id = p_to;
  IF v_mode = 1 THEN
    COMMIT;
  ELSE
    RELEASE SAVEPOINT ztm_transfer;
  END IF;
END //

DELIMITER ;

-- Tenant-scoped views: rows of the connection's tenant only; nothing without a tenant.
CREATE OR REPLACE DEFINER = 'api_definer'@'localhost' SQL SECURITY DEFINER VIEW v_users AS
  SELECT user_id, tenant_id, role, name_ct, name_iv, name_aad, email_ct, email_iv, email_aad,
         phone_ct, phone_iv, phone_aad, pii_wrapped_key, pii_kms_key_id, pii_key_version,
         pii_pq_wrapped_key, pq_alg, created_at
  FROM users WHERE tenant_id = get_tenant();

CREATE OR REPLACE DEFINER = 'api_definer'@'localhost' SQL SECURITY DEFINER VIEW v_accounts AS
  SELECT account_id, tenant_id, user_id, currency, balance, created_at
  FROM accounts WHERE tenant_id = get_tenant();

DELIMITER //

-- KEK rotation: replace the wrapped DEK of one record of the current tenant by its re-wrap
-- under a newer KEK version. Field ciphertext is not touched; the audit trail records it.
DROP PROCEDURE IF EXISTS app_rewrap_user_key //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE app_rewrap_user_key(
    IN p_user_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin, IN p_wrapped_key LONGTEXT,
    IN p_kms_key_id VARCHAR(512), IN p_key_version INT UNSIGNED)
  MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  DECLARE v_tenant CHAR(36) CHARACTER SET ascii DEFAULT get_tenant();
  DECLARE v_current INT UNSIGNED;
  IF v_tenant IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_rewrap_user_key: no tenant context (call security_set_tenant)';
  END IF;
  IF FROM_BASE64(p_wrapped_key) IS NULL OR p_kms_key_id IS NULL OR p_key_version IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_rewrap_user_key: wrapped key (base64), key id and version required';
  END IF;
  -- One statement checks and writes: the version condition is part of the UPDATE, so two
  -- concurrent rewraps cannot both pass a check made before either wrote (with or without
  -- the caller's transaction, and no transaction of its own to commit).
  UPDATE users SET pii_wrapped_key = FROM_BASE64(p_wrapped_key), pii_kms_key_id = p_kms_key_id,
                   pii_key_version = p_key_version
    WHERE user_id = p_user_id AND tenant_id = v_tenant AND pii_key_version < p_key_version;
  IF ROW_COUNT() = 0 THEN
    SELECT pii_key_version INTO v_current FROM users WHERE user_id = p_user_id AND tenant_id = v_tenant;
    IF v_current IS NULL THEN
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_rewrap_user_key: no such user in the current tenant';
    END IF;
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'app_rewrap_user_key: the key version must increase';
  END IF;
END //

DELIMITER ;

-- Every definition that decides what is recorded and enforced, for the auditor (and so the
-- off-host anchor) without holding TRIGGER or SHOW VIEW, which would let it read or create
-- more: all triggers, routines (with their parameters), views, and the base tables'
-- columns, keys, constraints and foreign keys. One row per (kind, object, part), ordered;
-- ztm.anchoring digests each object and names the ones that changed. A procedure, not a
-- view: MySQL filters information_schema by the invoker's rights even inside a definer view.
DROP VIEW IF EXISTS v_audit_guards;

DELIMITER //

DROP PROCEDURE IF EXISTS audit_guard_definitions //
DROP PROCEDURE IF EXISTS audit_definitions //
CREATE DEFINER = 'api_definer'@'localhost' PROCEDURE audit_definitions()
  READS SQL DATA SQL SECURITY DEFINER
BEGIN
  SELECT kind, object_name, part FROM (
    SELECT 'table' AS kind, TABLE_NAME AS object_name, CONCAT_WS('|', 'engine', ENGINE, TABLE_COLLATION) AS part
      FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${database}' AND TABLE_TYPE = 'BASE TABLE'
    UNION ALL
    SELECT 'table', TABLE_NAME, CONCAT_WS('|', 'column', LPAD(ORDINAL_POSITION, 4, '0'), COLUMN_NAME, COLUMN_TYPE,
           IFNULL(COLLATION_NAME, '-'), IS_NULLABLE, IFNULL(COLUMN_DEFAULT, '-'), EXTRA)
      FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '${database}'
        AND TABLE_NAME IN (SELECT TABLE_NAME FROM information_schema.TABLES
                           WHERE TABLE_SCHEMA = '${database}' AND TABLE_TYPE = 'BASE TABLE')
    UNION ALL
    SELECT 'table', TABLE_NAME, CONCAT_WS('|', 'constraint', CONSTRAINT_NAME, CONSTRAINT_TYPE)
      FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '${database}'
    UNION ALL
    SELECT 'table', t.TABLE_NAME, CONCAT_WS('|', 'check', c.CONSTRAINT_NAME, c.CHECK_CLAUSE)
      FROM information_schema.CHECK_CONSTRAINTS c
      JOIN information_schema.TABLE_CONSTRAINTS t ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA
        AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND t.CONSTRAINT_TYPE = 'CHECK'
      WHERE c.CONSTRAINT_SCHEMA = '${database}'
    UNION ALL
    SELECT 'table', TABLE_NAME, CONCAT_WS('|', 'key', CONSTRAINT_NAME, LPAD(ORDINAL_POSITION, 4, '0'), COLUMN_NAME,
           IFNULL(REFERENCED_TABLE_NAME, '-'), IFNULL(REFERENCED_COLUMN_NAME, '-'))
      FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_SCHEMA = '${database}'
    UNION ALL
    SELECT 'table', TABLE_NAME, CONCAT_WS('|', 'references', CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE)
      FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '${database}'
    UNION ALL
    SELECT 'trigger', TRIGGER_NAME, CONCAT_WS('|', EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION,
           ACTION_ORDER, DEFINER, ACTION_STATEMENT)
      FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '${database}'
    UNION ALL
    SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME, CONCAT_WS('|', SECURITY_TYPE, DEFINER, SQL_DATA_ACCESS,
           IS_DETERMINISTIC, IFNULL(DTD_IDENTIFIER, '-'), ROUTINE_DEFINITION)
      FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '${database}'
    UNION ALL
    SELECT LOWER(ROUTINE_TYPE), SPECIFIC_NAME, CONCAT_WS('|', 'parameter', LPAD(ORDINAL_POSITION, 4, '0'),
           IFNULL(PARAMETER_MODE, '-'), IFNULL(PARAMETER_NAME, '-'), DTD_IDENTIFIER, IFNULL(COLLATION_NAME, '-'))
      FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = '${database}'
    UNION ALL
    SELECT 'view', TABLE_NAME, CONCAT_WS('|', SECURITY_TYPE, DEFINER, CHECK_OPTION, VIEW_DEFINITION)
      FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '${database}'
  ) d
  ORDER BY kind, object_name, part;
END //

DELIMITER ;
