-- Quota state shared by every relaisd replica (broker/ratelimit/pgquota).
--
-- quota_daily holds one counter per Paris day and key (consumer × service):
-- one atomic INSERT … ON CONFLICT DO UPDATE … WHERE n < cap takes a unit, so
-- a daily cap is exact across replicas. Days before yesterday are deleted by
-- the replicas as the days pass.
--
-- quota_inflight is the duplicate-in-flight guard: one row per call in
-- flight (key = consumer × service × method × subject pseudonym, never a
-- citizen's identity), with an expiry so that a replica that died holding a
-- row does not block the key for longer than the ttl. holder is a random
-- token: only the holder releases its row. The table is UNLOGGED (no WAL,
-- no fsync per call): a database crash or failover empties it, releasing
-- holds whose calls that event cut anyway. Daily units are committed with
-- synchronous_commit off by pgquota: a server crash may lose the last few
-- hundred milliseconds of counts.

-- +goose Up

CREATE TABLE quota_daily (
    day date    NOT NULL,
    key text    NOT NULL CHECK (key <> ''),
    n   integer NOT NULL CHECK (n > 0),
    PRIMARY KEY (day, key)
);

CREATE UNLOGGED TABLE quota_inflight (
    key        text        PRIMARY KEY CHECK (key <> ''),
    holder     bytea       NOT NULL CHECK (length(holder) = 16),
    expires_at timestamptz NOT NULL
);
CREATE INDEX quota_inflight_expires_at ON quota_inflight (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON quota_daily, quota_inflight TO relais_broker;

-- +goose Down

DROP TABLE quota_inflight;
DROP TABLE quota_daily;
