-- The audit trail: one global SHA-256 hash chain (DESIGN §6).
--
-- Row n stores exactly the text that was hashed:
--   curr_hash(n) = lower-hex SHA-256( prev_hash(n) || payload(n) ), both as UTF-8 bytes,
--   prev_hash(n) = curr_hash(n-1), prev_hash(1) = 64 zeros ("genesis").
-- payload is a JSON object that starts with {"seq": n, ...} followed by what the trigger
-- recorded: table, op, key, tenant, actor (USER()), at (UTC, microseconds), before, after.
-- Binary columns appear as upper-case hex. Verifiers never re-serialise the JSON: they hash
-- the stored bytes, so the key order and spacing of either engine do not matter.
--
-- Writers serialise on the single audit_chain_head row (SELECT ... FOR UPDATE), so two
-- transactions can never extend the chain from the same head (no fork).
USE ${database};

CREATE TABLE IF NOT EXISTS audit_events (
  seq        BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  payload    LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  prev_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  curr_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS audit_chain_head (
  id         TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  seq        BIGINT UNSIGNED NOT NULL,
  head_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  CONSTRAINT ck_head_single_row CHECK (id = 1)
) ENGINE = InnoDB;

-- The genesis head, inserted once (no row, no guard trigger involved).
INSERT INTO audit_chain_head (id, seq, head_hash)
  SELECT 1, 0, REPEAT('0', 64) FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM audit_chain_head);
