-- Who did what: an append-only, hash-chained audit log with one entry per accepted
-- write, and the write each record revision belongs to (its actor is the entry's).
-- See src/domain/audit.rs for the chain.

CREATE TABLE audit_log (
    -- 1, 2, 3, ... without gaps: a missing number is a deleted entry.
    seq        INTEGER NOT NULL PRIMARY KEY,
    -- Joins record revisions to the write that made them.
    write_id   INTEGER NOT NULL UNIQUE,
    time       INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    agency     TEXT,
    method     TEXT    NOT NULL,
    request_id TEXT,
    -- Record keys or registry resource names, one per line.
    keys       TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);

-- The newest entry's number and hash: appends take it in order, and verification
-- notices entries deleted from the end.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- NULL for revisions written before the audit log existed.
ALTER TABLE record_revisions ADD COLUMN write_id INTEGER;
