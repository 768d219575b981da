-- Records: the current version of each record under its natural key, and the
-- append-only history of every accepted write (the audit trail). As on SQLite, a
-- record's content is stored once, in its revision.

CREATE TABLE records (
    id               BIGSERIAL PRIMARY KEY,
    key              TEXT COLLATE "C" NOT NULL UNIQUE,
    kind             SMALLINT NOT NULL,
    partnership_id   TEXT COLLATE "C" REFERENCES partnerships (id),
    reporting_agency TEXT COLLATE "C" NOT NULL REFERENCES agencies (id),
    -- Days since 1970-01-01, as on SQLite.
    span_start       BIGINT   NOT NULL,
    span_end         BIGINT   NOT NULL,
    revision         BIGINT   NOT NULL,
    update_time      BIGINT   NOT NULL
);

CREATE INDEX records_by_partnership ON records (partnership_id, kind, span_end);
CREATE INDEX records_by_agency ON records (reporting_agency, kind, span_start);

CREATE TABLE record_revisions (
    record_id        BIGINT NOT NULL REFERENCES records (id),
    revision         BIGINT NOT NULL,
    request_id       TEXT,
    commit_time      BIGINT NOT NULL,
    content          BYTEA  NOT NULL,
    PRIMARY KEY (record_id, revision)
);
