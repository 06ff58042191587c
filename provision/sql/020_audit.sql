-- The audit trail: 64 SHA-256 hash chains ("lanes"), one head row each (DESIGN §6).
--
-- An event belongs to the lane of its tenant: lane = CRC32(tenant_id) MOD 64 (an event
-- without a tenant: lane 0). The number of lanes is fixed here at install: the head table
-- holds exactly one row per lane (its CHECK and the guards forbid another), and every
-- anchor records every lane's head. A row never moves to another tenant (audit_append
-- refuses it), so all events of one key are in one lane, totally ordered by its seq.
--
-- Row n of lane l stores exactly the text that was hashed:
--   curr_hash(l, n) = lower-hex SHA-256( prev_hash(l, n) || payload(l, n) ), both as UTF-8 bytes,
--   prev_hash(l, n) = curr_hash(l, n-1), prev_hash(l, 1) = 64 zeros ("genesis").
-- payload is a JSON object that starts with {"lane": l, "seq": n, ...} followed by what the
-- trigger recorded: table, op, key, tenant, actor (USER()), at (UTC, microseconds), before,
-- after. Binary columns appear as upper-case hex. Verifiers never re-serialise the JSON:
-- they hash the stored bytes, so the key order and spacing of either engine do not matter.
--
-- Writers of one lane serialise on its head row (SELECT ... FOR UPDATE), so two transactions
-- can never extend a lane from the same head (no fork); writers of different lanes never
-- touch the same head row.
USE ${database};

CREATE TABLE IF NOT EXISTS audit_events (
  lane       SMALLINT UNSIGNED NOT NULL,
  seq        BIGINT UNSIGNED NOT NULL,
  payload    LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  prev_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  curr_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (lane, seq),
  CONSTRAINT ck_events_lane CHECK (lane < 64)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS audit_chain_head (
  lane       SMALLINT UNSIGNED NOT NULL PRIMARY KEY,
  seq        BIGINT UNSIGNED NOT NULL,
  head_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  CONSTRAINT ck_head_lane CHECK (lane < 64)
) ENGINE = InnoDB;

-- The genesis head of every lane, inserted once (no row, no guard trigger involved).
INSERT INTO audit_chain_head (lane, seq, head_hash)
  SELECT l.n, 0, REPEAT('0', 64) FROM (
    SELECT a.d * 8 + b.d AS n
    FROM (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
          UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7) a
    CROSS JOIN (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
          UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7) b) l
  WHERE NOT EXISTS (SELECT 1 FROM audit_chain_head h WHERE h.lane = l.n);
