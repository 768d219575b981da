-- Records: the current version of each record under its natural key, and the
-- append-only history of every accepted write (the audit trail).

CREATE TABLE records (
    -- Natural key as a path, e.g. 'workforce_return/pa/nhs-a/2026Q3'.
    key              TEXT    NOT NULL PRIMARY KEY,
    kind             INTEGER NOT NULL,
    -- NULL for restructuring events, which belong to an agency only.
    partnership_id   TEXT    REFERENCES partnerships (id),
    reporting_agency TEXT    NOT NULL REFERENCES agencies (id),
    period           TEXT,
    -- The days the record speaks of: its period, a contract's term, or a date.
    span_start       TEXT    NOT NULL,
    span_end         TEXT    NOT NULL,
    -- The record as JSON (the domain type's serde form).
    payload          TEXT    NOT NULL,
    revision         INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    request_id       TEXT
) WITHOUT ROWID;

-- Reports read one partnership's records whose span reaches into the period.
CREATE INDEX records_by_partnership ON records (partnership_id, span_end);
-- Restructuring events by agency and date; record listings by reporting agency.
CREATE INDEX records_by_agency ON records (reporting_agency, kind, span_start);

CREATE TABLE record_revisions (
    key              TEXT    NOT NULL,
    revision         INTEGER NOT NULL,
    -- The reporting agency as stated in the record.
    reporting_agency TEXT    NOT NULL,
    request_id       TEXT,
    commit_time      INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    PRIMARY KEY (key, revision)
) WITHOUT ROWID;
