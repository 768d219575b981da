-- The foreign keys from the record tables to the registry and from revisions to records
-- were checked row by row in every batch: each inserted record ran two lookup queries
-- (its partnership, its agency) and each revision one more, about 40% of PostgreSQL's
-- CPU in a batch (see BENCHMARKS.md, "PostgreSQL ingest"). What they guaranteed still
-- holds without them:
-- - a record names a partnership and an agency that exist: every batch is checked
--   against the registry before it is written (`Store::known_ids`, UNKNOWN_AGENCY and
--   UNKNOWN_PARTNERSHIP), and registry rows are never deleted nor renamed (the
--   triggers below refuse it, so the check cannot go stale);
-- - a revision belongs to a record: revisions are written only with the ids that the
--   same transaction's record upsert returned, and records are never deleted (also
--   refused below).
-- Memberships keep their foreign keys: they are written one registry call at a time.

ALTER TABLE record_revisions DROP CONSTRAINT record_revisions_record_id_fkey;
ALTER TABLE records DROP CONSTRAINT records_partnership_id_fkey;
ALTER TABLE records DROP CONSTRAINT records_reporting_agency_fkey;

CREATE FUNCTION refuse_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted or re-keyed: records refer to them', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;

-- Statement triggers: they cost nothing per inserted row.
CREATE TRIGGER agencies_are_kept BEFORE DELETE OR TRUNCATE ON agencies
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removal();
CREATE TRIGGER agencies_keep_their_ids BEFORE UPDATE OF id ON agencies
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removal();
CREATE TRIGGER partnerships_are_kept BEFORE DELETE OR TRUNCATE ON partnerships
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removal();
CREATE TRIGGER partnerships_keep_their_ids BEFORE UPDATE OF id ON partnerships
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removal();
CREATE TRIGGER records_are_kept BEFORE DELETE OR TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removal();
CREATE TRIGGER records_keep_their_ids BEFORE UPDATE OF id ON records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removal();
