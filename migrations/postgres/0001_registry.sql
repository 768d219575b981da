-- Registry: agencies, partnerships, memberships, and the request log behind
-- idempotent writes (AIP-155). The same logical schema as the SQLite backend.
-- Text that is ordered or compared (ids, dates) uses the "C" collation, so that
-- listing and paging follow byte order exactly as on SQLite. Dates are ISO
-- `YYYY-MM-DD` text; times are microseconds since the Unix epoch.

CREATE TABLE agencies (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name TEXT   NOT NULL,
    sector       TEXT   NOT NULL,
    create_time  BIGINT NOT NULL
);

CREATE TABLE partnerships (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name TEXT   NOT NULL,
    purpose      TEXT   NOT NULL,
    create_time  BIGINT NOT NULL,
    -- Bumped in the same transaction as every write that can change a report of
    -- this partnership, so a cached report is valid exactly while it is unchanged.
    data_version BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE memberships (
    partnership_id TEXT COLLATE "C" NOT NULL REFERENCES partnerships (id),
    agency_id      TEXT COLLATE "C" NOT NULL REFERENCES agencies (id),
    role           TEXT   NOT NULL CHECK (role IN ('LEAD', 'MEMBER')),
    start_date     TEXT COLLATE "C" NOT NULL,
    end_date       TEXT COLLATE "C" CHECK (end_date IS NULL OR end_date >= start_date),
    create_time    BIGINT NOT NULL,
    update_time    BIGINT NOT NULL,
    PRIMARY KEY (partnership_id, agency_id)
);

CREATE INDEX memberships_by_agency ON memberships (agency_id);

CREATE TABLE request_log (
    request_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    method      TEXT   NOT NULL,
    fingerprint BYTEA  NOT NULL,
    -- Empty while the request that claimed the id is still in its transaction.
    response    TEXT   NOT NULL,
    create_time BIGINT NOT NULL
);

CREATE INDEX request_log_by_time ON request_log (create_time);
