-- Expiry reminders to the consuming bodies' contacts (broker/reminders/pgrem).
--
-- reminder holds one row per step of one end date of a certificate or a
-- grant: whether its mail went out, the attempts, a sanitised error class.
-- It names the consumer by SIRET and the certificate serial or grant id,
-- never a contact's name or address (those stay in the registry). The job
-- that writes it runs on one replica at a time (a cluster lease); an
-- upsert by key makes a pass idempotent. Rows whose end date is 90 days
-- past are deleted by the job.

-- +goose Up

CREATE TABLE reminder (
    key           text        PRIMARY KEY CHECK (key <> '' AND length(key) <= 256),
    kind          text        NOT NULL CHECK (kind IN ('certificate', 'grant')),
    consumer      text        NOT NULL CHECK (consumer <> '' AND length(consumer) <= 64),
    ref           text        NOT NULL CHECK (ref <> '' AND length(ref) <= 128),
    service       text        NOT NULL CHECK (length(service) <= 256),
    not_after     timestamptz NOT NULL,
    step_days     integer     NOT NULL CHECK (step_days BETWEEN 1 AND 366),
    state         text        NOT NULL CHECK (state IN ('sent', 'failed')),
    attempts      integer     NOT NULL CHECK (attempts >= 1),
    recipients    integer     NOT NULL CHECK (recipients >= 0),
    first_attempt timestamptz NOT NULL,
    last_attempt  timestamptz NOT NULL,
    sent_at       timestamptz,
    last_error    text        NOT NULL CHECK (length(last_error) <= 256),
    CHECK (state <> 'sent' OR sent_at IS NOT NULL)
);
CREATE INDEX reminder_not_after ON reminder (not_after);

GRANT SELECT, INSERT, UPDATE, DELETE ON reminder TO relais_broker;

-- +goose Down

DROP TABLE reminder;
