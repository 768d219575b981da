-- Registry: agencies, partnerships, memberships, and the request log behind
-- idempotent writes (AIP-155). Dates are ISO `YYYY-MM-DD` text (their byte order is
-- their chronological order for years 1900-9999); times are microseconds since the
-- Unix epoch.

CREATE TABLE agencies (
    id           TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT    NOT NULL,
    sector       TEXT    NOT NULL,
    create_time  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE partnerships (
    id           TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT    NOT NULL,
    purpose      TEXT    NOT NULL,
    create_time  INTEGER NOT NULL,
    -- Bumped in the same transaction as every write that can change a report of
    -- this partnership, so a cached report is valid exactly while it is unchanged.
    data_version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE memberships (
    partnership_id TEXT    NOT NULL REFERENCES partnerships (id),
    agency_id      TEXT    NOT NULL REFERENCES agencies (id),
    role           TEXT    NOT NULL CHECK (role IN ('LEAD', 'MEMBER')),
    start_date     TEXT    NOT NULL,
    end_date       TEXT    CHECK (end_date IS NULL OR end_date >= start_date),
    create_time    INTEGER NOT NULL,
    update_time    INTEGER NOT NULL,
    PRIMARY KEY (partnership_id, agency_id)
) WITHOUT ROWID;

CREATE INDEX memberships_by_agency ON memberships (agency_id);

CREATE TABLE request_log (
    request_id  TEXT    NOT NULL PRIMARY KEY,
    method      TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL,
    response    TEXT    NOT NULL,
    create_time INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX request_log_by_time ON request_log (create_time);
