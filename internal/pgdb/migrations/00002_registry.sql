-- The registry on PostgreSQL (broker/registry/pgreg): consumers, grants,
-- credential records (revocations included) and the registry version.
--
-- Every write of pgreg is one transaction that first bumps the single row of
-- registry_version (which serialises the writers of every replica), then
-- changes the rows, then notifies channel relais_registry with the new
-- version (delivered at commit: the seam of the change feed). The broker
-- reads everything into an in-memory snapshot; no per-call query touches
-- these tables.
--
-- The small nested lists (a consumer's contacts, a grant's purposes) are
-- jsonb arrays: always read and written with their row, never queried on
-- their own, validated by the shared Go rules (broker/registry); scopes are
-- a text[]. Nothing here is personal data of a citizen; contacts are the
-- administrative contacts of public bodies.
--
-- relais_broker may SELECT, INSERT and UPDATE; it may never DELETE: a
-- revoked grant or credential is kept for history.

-- +goose Up

CREATE TABLE registry_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO registry_version (singleton, version) VALUES (true, 0);

CREATE TABLE registry_consumers (
    siret      text        PRIMARY KEY CHECK (siret ~ '^[0-9]{14}$'),
    name       text        NOT NULL CHECK (name <> ''),
    status     text        NOT NULL CHECK (status IN ('active', 'suspended')),
    contacts   jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(contacts) = 'array'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE registry_grants (
    id                            text             PRIMARY KEY CHECK (id ~ '^g-[0-9a-f]{16}$'),
    consumer                      text             NOT NULL REFERENCES registry_consumers (siret),
    service                       text             NOT NULL CHECK (service <> ''),
    scopes                        text[]           NOT NULL CHECK (cardinality(scopes) > 0),
    purposes                      jsonb            NOT NULL CHECK (jsonb_typeof(purposes) = 'array'),
    not_before                    timestamptz      NOT NULL,
    not_after                     timestamptz      NOT NULL CHECK (not_after > not_before),
    rate_per_second               double precision NOT NULL CHECK (rate_per_second >= 0 AND rate_per_second <= 10000),
    burst                         integer          NOT NULL CHECK (burst >= 0),
    daily_cap                     integer          NOT NULL CHECK (daily_cap >= 0),
    expected_daily_volume         integer          NOT NULL DEFAULT 0 CHECK (expected_daily_volume >= 0),
    anomaly_max_not_found_ratio   double precision NOT NULL DEFAULT 0 CHECK (anomaly_max_not_found_ratio >= 0 AND anomaly_max_not_found_ratio <= 1),
    anomaly_max_distinct_subjects integer          NOT NULL DEFAULT 0 CHECK (anomaly_max_distinct_subjects >= 0),
    anomaly_action                text             NOT NULL DEFAULT '' CHECK (anomaly_action IN ('', 'alert', 'throttle', 'suspend')),
    created_at                    timestamptz      NOT NULL,
    revoked_at                    timestamptz
);
CREATE INDEX registry_grants_consumer_service ON registry_grants (consumer, service);
CREATE INDEX registry_grants_expiring ON registry_grants (not_after) WHERE revoked_at IS NULL;

-- A bare revoked record (kind '', subject '') stands for a certificate
-- revoked through relaisd but issued outside it.
CREATE TABLE registry_credentials (
    serial     text        PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{1,64}$'),
    kind       text        NOT NULL CHECK (kind IN ('', 'consumer', 'operator')),
    subject    text        NOT NULL,
    not_before timestamptz,
    not_after  timestamptz,
    status     text        NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at timestamptz,
    issued_by  text        NOT NULL DEFAULT '',
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX registry_credentials_subject ON registry_credentials (subject, not_before DESC);
CREATE INDEX registry_credentials_revoked ON registry_credentials (serial) WHERE status = 'revoked';

GRANT SELECT, UPDATE ON registry_version TO relais_broker;
GRANT SELECT, INSERT, UPDATE ON registry_consumers, registry_grants, registry_credentials TO relais_broker;

-- +goose Down

DROP TABLE registry_credentials;
DROP TABLE registry_grants;
DROP TABLE registry_consumers;
DROP TABLE registry_version;
