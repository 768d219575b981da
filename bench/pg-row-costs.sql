-- What a record costs PostgreSQL in each table shape, without the service: 300,000
-- records (keys, partnerships and agencies shaped like the service's, ~100 bytes of
-- content) written by one statement per shape into a fresh table, the CPU time per
-- record being the statement's time over 300,000. No commit costs, no client: these
-- are the rows' and indexes' own costs (BENCHMARKS.md, "PostgreSQL ingest").
--   psql -q postgres://postgres@127.0.0.1:5432/test -f bench/pg-row-costs.sql
-- It creates and leaves the database pm_row_costs (DROP DATABASE pm_row_costs).
DROP DATABASE IF EXISTS pm_row_costs;
CREATE DATABASE pm_row_costs;
\c pm_row_costs
CREATE UNLOGGED TABLE src AS
SELECT 'kind' || (g % 9) || '/p' || lpad(((g::int8 * 7919) % 1600)::text, 5, '0') || '/r' || g AS key,
       (g % 9)::int2 AS kind, 'p' || lpad(((g::int8 * 7919) % 1600)::text, 5, '0') AS pid,
       'a' || (g % 5000) AS agency, (g % 1000)::int8 AS s, (g % 1000 + 90)::int8 AS e,
       decode(md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) || md5((g + 3)::text), 'hex') AS content
FROM generate_series(1, 300000) g;

-- The service's tables (migrations 0002-0005).
CREATE TABLE records (id BIGSERIAL PRIMARY KEY, key TEXT COLLATE "C" NOT NULL UNIQUE, kind SMALLINT NOT NULL,
    partnership_id TEXT COLLATE "C", reporting_agency TEXT COLLATE "C" NOT NULL, span_start BIGINT NOT NULL,
    span_end BIGINT NOT NULL, revision BIGINT NOT NULL, update_time BIGINT NOT NULL);
CREATE INDEX ON records (partnership_id, kind, span_end);
CREATE INDEX ON records (partnership_id, key);
CREATE INDEX ON records (reporting_agency, key);
CREATE TABLE record_revisions (record_id BIGINT NOT NULL, revision BIGINT NOT NULL, request_id TEXT,
    commit_time BIGINT NOT NULL, content BYTEA NOT NULL, write_id BIGINT, PRIMARY KEY (record_id, revision));
CREATE TABLE records2 (LIKE records INCLUDING ALL);
CREATE TABLE record_revisions2 (LIKE record_revisions INCLUDING ALL);
-- The current content in the record's own row (history rows only for superseded
-- revisions): one tuple a new record.
CREATE TABLE merged (LIKE records INCLUDING ALL, request_id TEXT, write_id BIGINT, content BYTEA NOT NULL);
-- The anchor's table.
CREATE TABLE minimal (key TEXT COLLATE "C" PRIMARY KEY, content BYTEA NOT NULL);
CHECKPOINT;
\timing on

\echo 1. records by INSERT ... ON CONFLICT, then their revisions (the write before this change)
WITH r AS (INSERT INTO records (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time)
    SELECT key, kind, pid, agency, s, e, 1, 0 FROM src ORDER BY key
    ON CONFLICT (key) DO UPDATE SET revision = records.revision + 1 RETURNING key, id, revision)
INSERT INTO record_revisions SELECT r.id, r.revision, NULL, 0, src.content, 1 FROM r JOIN src USING (key);
CHECKPOINT;

\echo 2. the stored keys locked, records by plain INSERT, then their revisions (the write now)
\timing off
SELECT array_agg(key ORDER BY key) AS keys FROM src \gset
PREPARE lock_stored(text[]) AS SELECT count(*) FROM UNNEST($1) AS k(key)
    CROSS JOIN LATERAL (SELECT id FROM records2 WHERE key = k.key FOR UPDATE) r;
\timing on
EXECUTE lock_stored(:'keys');
WITH r AS (INSERT INTO records2 (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time)
    SELECT key, kind, pid, agency, s, e, 1, 0 FROM src ORDER BY key RETURNING key, id, revision)
INSERT INTO record_revisions2 SELECT r.id, r.revision, NULL, 0, src.content, 1 FROM r JOIN src USING (key);
CHECKPOINT;

\echo 3. the content in the record itself, plain INSERT
WITH r AS (INSERT INTO merged (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time, write_id, content)
    SELECT key, kind, pid, agency, s, e, 1, 0, 1, content FROM src ORDER BY key RETURNING key, id, revision)
SELECT count(*) FROM r;
CHECKPOINT;

\echo 4. the anchor: natural key and content only
INSERT INTO minimal SELECT key, content FROM src ORDER BY key;
