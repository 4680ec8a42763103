-- Cluster state shared by the relaisd replicas of one database
-- (broker/cluster/pgcluster).
--
-- cluster_member holds one row per replica id: its addresses for the ops
-- view and its last heartbeat (the server's clock, so the replicas' clocks
-- may differ). A replica upserts its row every heartbeat interval and
-- deletes it when it leaves gracefully; rows of replicas that died stay,
-- not live, and are deleted after a day. Who may use an id is decided by a
-- session advisory lock, not by this table.
--
-- cluster_lock numbers the names of those advisory locks ("member:<id>",
-- "lease:<name>"): the lock is pg_try_advisory_lock(1380731731, key), so
-- two names never share a lock (no hash collisions), and pg_locks.objid
-- joined with key says which replica or lease a lock is.

-- +goose Up

CREATE TABLE cluster_member (
    id         text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    data_addr  text        NOT NULL CHECK (length(data_addr) <= 255),
    admin_addr text        NOT NULL CHECK (length(admin_addr) <= 255),
    started_at timestamptz NOT NULL,
    beat_at    timestamptz NOT NULL
);

CREATE TABLE cluster_lock (
    name text    PRIMARY KEY CHECK (name <> '' AND length(name) <= 100),
    key  integer GENERATED ALWAYS AS IDENTITY UNIQUE
);

GRANT SELECT, INSERT, UPDATE, DELETE ON cluster_member TO relais_broker;
GRANT SELECT, INSERT ON cluster_lock TO relais_broker;

-- +goose Down

DROP TABLE cluster_lock;
DROP TABLE cluster_member;
