-- Who did what: an append-only, hash-chained audit log with one entry per accepted
-- write, and the write each record revision belongs to (its actor is the entry's).
-- The same logical schema as the SQLite backend; see src/domain/audit.rs.

CREATE TABLE audit_log (
    -- 1, 2, 3, ... without gaps: a missing number is a deleted entry.
    seq        BIGINT NOT NULL PRIMARY KEY,
    -- Joins record revisions to the write that made them; taken from
    -- audit_write_ids at the start of a write, before the entry's place is known.
    write_id   BIGINT NOT NULL UNIQUE,
    time       BIGINT NOT NULL,
    client_id  TEXT   NOT NULL,
    agency     TEXT,
    method     TEXT   NOT NULL,
    request_id TEXT,
    -- Record keys or registry resource names, one per line.
    keys       TEXT   NOT NULL,
    prev_hash  BYTEA  NOT NULL,
    hash       BYTEA  NOT NULL
);

CREATE SEQUENCE audit_write_ids;

-- The newest entry's number and hash. Every write updates this row last, just before
-- it commits: that orders appends across replicas, and verification notices entries
-- deleted from the end.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash BYTEA   NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- NULL for revisions written before the audit log existed.
ALTER TABLE record_revisions ADD COLUMN write_id BIGINT;
