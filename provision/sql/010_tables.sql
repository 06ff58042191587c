-- Data tables. PII columns hold only what the client produced: AES-256-GCM ciphertext,
-- its IV and AAD, the DEK wrapped by the KMS (and its key id and version), and optionally
-- a post-quantum hybrid wrap of the same DEK with its suite name. Nothing here can decrypt.
USE ${database};

CREATE TABLE IF NOT EXISTS tenants (
  tenant_id   CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  name        VARCHAR(200) NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

-- Which authenticated account (by its user name: the name the client certificate is bound
-- to) may act for which tenant.
CREATE TABLE IF NOT EXISTS tenant_grants (
  user_name   VARCHAR(80) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  tenant_id   CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (user_name, tenant_id),
  CONSTRAINT fk_grant_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS users (
  user_id             CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  tenant_id           CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  role                VARCHAR(64) NOT NULL,
  name_ct             VARBINARY(4096) NOT NULL,
  name_iv             VARBINARY(16) NOT NULL,
  name_aad            VARBINARY(1024) NOT NULL,
  email_ct            VARBINARY(4096) NOT NULL,
  email_iv            VARBINARY(16) NOT NULL,
  email_aad           VARBINARY(1024) NOT NULL,
  phone_ct            VARBINARY(4096) NOT NULL,
  phone_iv            VARBINARY(16) NOT NULL,
  phone_aad           VARBINARY(1024) NOT NULL,
  pii_wrapped_key     VARBINARY(2048) NOT NULL,
  pii_kms_key_id      VARCHAR(512) NOT NULL,
  pii_key_version     INT UNSIGNED NOT NULL DEFAULT 1,
  pii_pq_wrapped_key  VARBINARY(4096) NULL,
  pq_alg              VARCHAR(64) NULL,
  created_at          TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY ix_users_tenant (tenant_id),
  CONSTRAINT fk_users_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
  CONSTRAINT ck_users_iv CHECK (LENGTH(name_iv) = 12 AND LENGTH(email_iv) = 12 AND LENGTH(phone_iv) = 12),
  CONSTRAINT ck_users_pq CHECK ((pii_pq_wrapped_key IS NULL) = (pq_alg IS NULL))
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS accounts (
  account_id  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  tenant_id   CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id     CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  currency    CHAR(3) CHARACTER SET ascii NOT NULL,
  balance     DECIMAL(19, 4) NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY ix_accounts_tenant (tenant_id),
  CONSTRAINT fk_accounts_user FOREIGN KEY (user_id) REFERENCES users (user_id),
  CONSTRAINT fk_accounts_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
  CONSTRAINT ck_accounts_balance CHECK (balance >= 0)
) ENGINE = InnoDB;
