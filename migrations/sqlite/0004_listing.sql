-- Record listings page in key order within their filters; with these an indexed
-- filter's page is an index range scan (a partnership's page used to sort the whole
-- partnership). Keys begin with the kind, so a kind filter is a key range already.
-- records_by_agency served restructuring events by agency and date in report reads;
-- (reporting_agency, key) serves them as well (an agency's events are one key range)
-- and listings by agency too, so it replaces it rather than adding a third index.
CREATE INDEX records_by_partnership_key ON records (partnership_id, key);
DROP INDEX records_by_agency;
CREATE INDEX records_by_agency_key ON records (reporting_agency, key);
