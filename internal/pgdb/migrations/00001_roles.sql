-- The roles of a Relais database. Roles are cluster-wide, so this migration
-- is idempotent across every database of the cluster (and safe when two
-- databases are migrated at once): it creates a role only when it is missing
-- and never drops one.
--
--   relais_broker     what relaisd runs as: each later migration GRANTs it
--                     exactly what the broker needs on its tables.
--   relais_retention  the separate credential for retention jobs (dropping
--                     old audit partitions), so the broker's own role can
--                     never rewrite history.
--
-- Both are NOLOGIN: an operator gives a login role membership, e.g.
--
--   CREATE ROLE relaisd LOGIN PASSWORD '...' IN ROLE relais_broker;
--   GRANT relais_retention TO relais_purge;   -- an existing login role
--
-- and puts that login in the broker's dsn_file. Migrations run as the owner
-- of the database (`relaisctl db migrate`), never as relais_broker.

-- +goose Up

-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['relais_broker', 'relais_retention'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by the migration of another database
            END;
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO relais_broker, relais_retention', current_database());
END
$$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA public TO relais_broker, relais_retention;

-- relaisd checks the schema version at start (pgdb.Check).
GRANT SELECT ON goose_db_version TO relais_broker, relais_retention;

-- +goose Down

-- The roles stay: other databases of the cluster may use them.
REVOKE SELECT ON goose_db_version FROM relais_broker, relais_retention;
REVOKE USAGE ON SCHEMA public FROM relais_broker, relais_retention;

-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM relais_broker, relais_retention', current_database());
END
$$;
-- +goose StatementEnd
