-- Run by the server at every start (init_file) and by the installer.
-- The tenant context of a connection lives in tenant_context, keyed by CONNECTION_ID().
-- Connection ids restart after a server restart, so a row left by a connection of the
-- previous run could otherwise be inherited by a new connection with the same id:
-- the context table is emptied at every start. It only ever holds live sessions.
CREATE DATABASE IF NOT EXISTS ${database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE TABLE IF NOT EXISTS ${database}.tenant_context (
  connection_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  login_user    VARCHAR(288) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  tenant_id     CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  set_at        TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
DELETE FROM ${database}.tenant_context;
