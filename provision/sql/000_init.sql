-- Run by the installer, and by the server at every start (its init_file, followed by
-- startup.sql). The tenant context of a connection lives in tenant_context, keyed by
-- CONNECTION_ID() and bound to a random session key that security_set_tenant hands the
-- session in a user variable. COM_RESET_CONNECTION and COM_CHANGE_USER clear user variables,
-- so a pooled or reset connection has no tenant; and a row left behind by a connection of an
-- earlier server run (connection ids restart at 1) is never inherited by a new connection
-- with the same id, because that connection does not hold its key. The installer never
-- deletes contexts (live sessions keep theirs); the server empties the table at start.
CREATE DATABASE IF NOT EXISTS ${database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE TABLE IF NOT EXISTS ${database}.tenant_context (
  connection_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  login_user    VARCHAR(288) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  tenant_id     CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  session_key   BINARY(16) NOT NULL,
  set_at        TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
