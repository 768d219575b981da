-- Records: the current version of each record under its natural key, and the
-- append-only history of every accepted write (the audit trail).
--
-- A record's content is stored once, in its revision; `records` holds what selects
-- and orders records (key, partnership, reporting agency, span) and the number of
-- the current revision. Contents are compact binary (see src/storage/codec.rs).

CREATE TABLE records (
    id               INTEGER PRIMARY KEY,
    -- Natural key as a path, e.g. 'workforce_return/pa/nhs-a/2026Q3'.
    key              TEXT    NOT NULL UNIQUE,
    kind             INTEGER NOT NULL,
    -- NULL for restructuring events, which belong to an agency only.
    partnership_id   TEXT    REFERENCES partnerships (id),
    reporting_agency TEXT    NOT NULL REFERENCES agencies (id),
    -- The days the record speaks of (its period, a contract's term, or a date), as
    -- days since 1970-01-01: compared on every report read and bound on every write.
    span_start       INTEGER NOT NULL,
    span_end         INTEGER NOT NULL,
    -- The current revision, whose content is the record.
    revision         INTEGER NOT NULL,
    update_time      INTEGER NOT NULL
);

-- Reports read one partnership's records of each kind whose span reaches into the
-- period (and its adoptions and endorsements of any earlier date).
CREATE INDEX records_by_partnership ON records (partnership_id, kind, span_end);
-- Restructuring events by agency and date; record listings by reporting agency.
CREATE INDEX records_by_agency ON records (reporting_agency, kind, span_start);

CREATE TABLE record_revisions (
    record_id        INTEGER NOT NULL REFERENCES records (id),
    revision         INTEGER NOT NULL,
    -- The content states the reporting agency; the request id is the batch's.
    request_id       TEXT,
    commit_time      INTEGER NOT NULL,
    content          BLOB    NOT NULL,
    PRIMARY KEY (record_id, revision)
) WITHOUT ROWID;
