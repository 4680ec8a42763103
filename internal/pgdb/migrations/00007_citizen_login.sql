-- Citizen login and deferred disclosure (issues 16 and 17).
--
-- registry_grants gains how the consumer may designate subjects under a
-- grant (designations: 'typed', 'citizen_login', in that canonical order;
-- empty means typed only, what every grant allowed before) and its deferred
-- disclosure (a delay before the citizen sees an access, and the legal
-- reference that allows it). Rows written before read as typed only, no
-- deferral.
--
-- audit_records gains disclose_after, a copy of the record's DiscloseAfter
-- (NULL when the access is disclosed at once, as every older record), so
-- that operators list the deferred accesses through a small partial index
-- instead of scanning the log. Nothing here is personal data.

-- +goose Up

ALTER TABLE registry_grants
    ADD COLUMN designations         text[]   NOT NULL DEFAULT '{}'
        CHECK (designations <@ ARRAY['typed', 'citizen_login']::text[] AND cardinality(designations) <= 2),
    ADD COLUMN disclosure_delay     interval NOT NULL DEFAULT '0'
        CHECK (disclosure_delay >= interval '0' AND disclosure_delay <= interval '87600 hours'),
    ADD COLUMN disclosure_reference text     NOT NULL DEFAULT ''
        CHECK (char_length(disclosure_reference) <= 256),
    ADD CONSTRAINT registry_grants_disclosure_reference
        CHECK ((disclosure_delay > interval '0') = (disclosure_reference <> ''));

ALTER TABLE audit_records ADD COLUMN disclose_after timestamptz;
CREATE INDEX audit_records_deferred ON audit_records (chain, seq) WHERE disclose_after IS NOT NULL;

-- +goose Down

DROP INDEX audit_records_deferred;
ALTER TABLE audit_records DROP COLUMN disclose_after;
ALTER TABLE registry_grants
    DROP CONSTRAINT registry_grants_disclosure_reference,
    DROP COLUMN disclosure_reference,
    DROP COLUMN disclosure_delay,
    DROP COLUMN designations;
