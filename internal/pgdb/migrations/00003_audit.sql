-- The audit log on PostgreSQL (broker/audit/pglog): an append-only table of
-- sealed records partitioned by month, the signed checkpoints, and the
-- SECURITY DEFINER functions through which the broker's role creates month
-- partitions and applies retention. relais_broker may INSERT and SELECT the
-- audit rows and nothing else: rewriting history needs the owner's
-- credential (the one that runs the migrations, which owns the tables, the
-- partitions and the functions), and retention cannot drop a month younger
-- than 30 days. Run the migrations as the database owner, not a superuser:
-- the SECURITY DEFINER functions run with the owner's rights.
--
-- Times are UTC months: a record lives in the partition of the month of its
-- time. Every function pins search_path and TimeZone.

-- +goose Up

-- One row per sealed record. stored is the sealed JSON exactly as
-- broker/audit/seal produced it: verification recomputes the hash from these
-- bytes. The other columns are copies for the indexes and the head; none of
-- them holds personal data (subject is the keyed pseudonym).
CREATE TABLE audit_records (
    chain    text        NOT NULL,
    seq      bigint      NOT NULL CHECK (seq > 0),
    time     timestamptz NOT NULL,
    prev     bytea       NOT NULL CHECK (length(prev) = 32),
    hash     bytea       NOT NULL CHECK (length(hash) = 32),
    consumer text        NOT NULL,
    subject  text        NOT NULL,
    method   text        NOT NULL,
    code     text        NOT NULL,
    stored   bytea       NOT NULL,
    PRIMARY KEY (chain, seq, time)
) PARTITION BY RANGE (time);

CREATE INDEX audit_records_subject_time ON audit_records (subject, time) WHERE subject <> '';
CREATE INDEX audit_records_consumer_time ON audit_records (consumer, time);

-- One row per signed checkpoint; stored is its JSON (seal.Checkpoint) as
-- signed, nanoseconds included.
CREATE TABLE audit_checkpoints (
    chain    text        NOT NULL,
    seq      bigint      NOT NULL CHECK (seq >= 0),
    time     timestamptz NOT NULL,
    head     bytea       NOT NULL CHECK (length(head) = 32),
    boundary boolean     NOT NULL,
    stored   bytea       NOT NULL,
    PRIMARY KEY (chain, seq)
);

-- relais_audit_head returns the head of a chain: its last record, or its
-- last boundary checkpoint when that is further (retention purged every
-- record up to it), else seq 0 and the zero hash; and the seq of its last
-- checkpoint (0 when none).
-- +goose StatementBegin
CREATE FUNCTION relais_audit_head(p_chain text, OUT seq bigint, OUT hash bytea, OUT last_checkpoint bigint)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    b record;
BEGIN
    SELECT r.seq, r.hash INTO seq, hash FROM audit_records r
     WHERE r.chain = p_chain ORDER BY r.seq DESC LIMIT 1;
    SELECT coalesce(max(c.seq), 0) INTO last_checkpoint FROM audit_checkpoints c WHERE c.chain = p_chain;
    SELECT c.seq, c.head INTO b FROM audit_checkpoints c
     WHERE c.chain = p_chain AND c.boundary ORDER BY c.seq DESC LIMIT 1;
    IF b.seq IS NOT NULL AND (seq IS NULL OR b.seq > seq) THEN
        seq := b.seq;
        hash := b.head;
    END IF;
    IF seq IS NULL THEN
        seq := 0;
        hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;
END
$$;
-- +goose StatementEnd

-- relais_audit_expect_head refuses (SQLSTATE RA001) a commit whose writer's
-- view of the head is not the chain's head in the database: a second writer
-- on the same chain, or a replayed batch, would fork or duplicate the chain.
-- The caller holds the chain's advisory lock.
-- +goose StatementBegin
CREATE FUNCTION relais_audit_expect_head(p_chain text, p_seq bigint, p_hash bytea) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    h record;
BEGIN
    SELECT * INTO h FROM relais_audit_head(p_chain);
    IF h.seq <> p_seq OR h.hash <> p_hash THEN
        RAISE EXCEPTION 'audit chain head is at seq %, the batch expects seq %', h.seq, p_seq
            USING ERRCODE = 'RA001';
    END IF;
END
$$;
-- +goose StatementEnd

-- relais_audit_ensure_partitions creates the month partitions that the given
-- times fall in, when missing, and returns how many it created. The broker
-- calls it in the transaction of a commit whose records fall in a month it
-- has not seen, so that no record ever lacks a partition.
-- +goose StatementBegin
CREATE FUNCTION relais_audit_ensure_partitions(p_times timestamptz[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    m timestamptz;
    part text;
    created integer := 0;
BEGIN
    FOR m IN SELECT DISTINCT date_trunc('month', t) FROM unnest(p_times) AS t WHERE t IS NOT NULL LOOP
        part := 'audit_records_' || to_char(m, '"y"YYYY"m"MM');
        IF to_regclass(part) IS NULL THEN
            -- One creator at a time; the loser finds it created.
            PERFORM pg_advisory_xact_lock(hashtext('relais.audit.partitions'), 0);
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF audit_records FOR VALUES FROM (%L) TO (%L)',
                               part, m, m + interval '1 month');
                created := created + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN created;
END
$$;
-- +goose StatementEnd

-- relais_audit_purge_plan says what retention before p_before drops: the
-- month partitions entirely older than the month of p_before whose records
-- are, for each chain, a prefix of it — a partition holding a record that
-- follows a younger one (a later record may carry an earlier time) stays,
-- and so does everything after it, so that what remains is contiguous. For
-- each chain losing records it gives the last one (seq and hash): where the
-- boundary checkpoint goes. Only index lookups, a few per partition.
-- SECURITY DEFINER: it reads the partitions, which only the owner reaches
-- directly; it changes nothing.
-- +goose StatementBegin
CREATE FUNCTION relais_audit_purge_plan(p_before timestamptz,
    OUT parts regclass[], OUT chains text[], OUT seqs bigint[], OUT heads bytea[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    cutoff timestamptz := date_trunc('month', p_before);
    keep regclass[];
    found text[];
    all_chains text[] := '{}';
    upto jsonb := '{}'::jsonb; -- chain -> highest seq that may go; absent: no limit
    part regclass;
    ch text;
    other text;
    lo bigint;
    hi bigint;
    last bigint;
    h bytea;
    changed boolean;
BEGIN
    SELECT coalesce(array_agg(b.rel) FILTER (WHERE b.upper <= cutoff), '{}'),
           coalesce(array_agg(b.rel) FILTER (WHERE b.upper > cutoff), '{}')
      INTO parts, keep
      FROM (SELECT c.oid::regclass AS rel,
                   substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'audit_records'::regclass) b;

    -- The chains with records in the old partitions (a loose index scan).
    FOREACH part IN ARRAY parts LOOP
        EXECUTE format('WITH RECURSIVE t AS ((SELECT chain FROM %1$s ORDER BY chain LIMIT 1)
                          UNION ALL SELECT (SELECT r.chain FROM %1$s r WHERE r.chain > t.chain ORDER BY r.chain LIMIT 1)
                          FROM t WHERE t.chain IS NOT NULL)
                        SELECT coalesce(array_agg(chain), ''{}'') FROM t WHERE chain IS NOT NULL', part) INTO found;
        SELECT array_agg(DISTINCT x) INTO all_chains FROM unnest(all_chains || found) AS x;
    END LOOP;
    all_chains := coalesce(all_chains, '{}');

    -- A chain may lose what comes before its first record that stays.
    FOREACH ch IN ARRAY all_chains LOOP
        FOREACH part IN ARRAY keep LOOP
            EXECUTE format('SELECT min(seq) FROM %s WHERE chain = $1', part) INTO lo USING ch;
            IF lo IS NOT NULL AND (NOT upto ? ch OR lo - 1 < (upto->>ch)::bigint) THEN
                upto := upto || jsonb_build_object(ch, lo - 1);
            END IF;
        END LOOP;
    END LOOP;
    LOOP
        changed := false;
        FOREACH part IN ARRAY parts LOOP
            FOREACH ch IN ARRAY all_chains LOOP
                EXECUTE format('SELECT max(seq) FROM %s WHERE chain = $1', part) INTO hi USING ch;
                IF hi IS NOT NULL AND upto ? ch AND hi > (upto->>ch)::bigint THEN
                    -- This partition stays, and bounds every chain in it.
                    parts := array_remove(parts, part);
                    FOREACH other IN ARRAY all_chains LOOP
                        EXECUTE format('SELECT min(seq) FROM %s WHERE chain = $1', part) INTO lo USING other;
                        IF lo IS NOT NULL AND (NOT upto ? other OR lo - 1 < (upto->>other)::bigint) THEN
                            upto := upto || jsonb_build_object(other, lo - 1);
                        END IF;
                    END LOOP;
                    changed := true;
                    EXIT;
                END IF;
            END LOOP;
        END LOOP;
        EXIT WHEN NOT changed;
    END LOOP;

    chains := '{}'; seqs := '{}'; heads := '{}';
    FOREACH ch IN ARRAY all_chains LOOP
        last := NULL;
        FOREACH part IN ARRAY parts LOOP
            EXECUTE format('SELECT max(seq) FROM %s WHERE chain = $1', part) INTO hi USING ch;
            last := GREATEST(last, hi);
        END LOOP;
        IF last IS NOT NULL THEN
            SELECT r.hash INTO h FROM audit_records r WHERE r.chain = ch AND r.seq = last AND r.time < cutoff;
            chains := chains || ch;
            seqs := seqs || last;
            heads := heads || h;
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- relais_audit_purge is retention: it drops the partitions that
-- relais_audit_purge_plan names, and replaces each purged chain's
-- checkpoints up to its last purged record by the signed boundary
-- checkpoint the caller passes (p_checkpoints: JSON of seal.Checkpoint, one
-- per chain purged). It refuses a cutoff younger than 30 days, and a
-- boundary missing, extra or not at the chain's last purged record. It holds
-- the table exclusively for index lookups and the drops only (callers set a
-- lock_timeout). It returns how many records it purged, counted from the
-- sequence numbers (the chain above its previous boundary is contiguous).
-- +goose StatementBegin
CREATE FUNCTION relais_audit_purge(p_before timestamptz, p_checkpoints bytea[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    plan record;
    cps jsonb := '[]'::jsonb;
    raw bytea;
    part regclass;
    purged bigint := 0;
    prev bigint;
BEGIN
    IF p_before IS NULL OR p_before > now() - interval '30 days' THEN
        RAISE EXCEPTION 'audit retention refuses a cutoff younger than 30 days'
            USING ERRCODE = 'RA002';
    END IF;
    -- Dropping a partition takes this lock anyway; taking it first means
    -- no append lands in a month being dropped while the plan is checked.
    LOCK TABLE audit_records IN ACCESS EXCLUSIVE MODE;
    SELECT * INTO plan FROM relais_audit_purge_plan(p_before);

    FOREACH raw IN ARRAY coalesce(p_checkpoints, '{}') LOOP
        cps := cps || jsonb_build_array(convert_from(raw, 'UTF8')::jsonb || jsonb_build_object('_raw', encode(raw, 'base64')));
    END LOOP;
    IF jsonb_array_length(cps) <> coalesce(array_length(plan.chains, 1), 0) THEN
        RAISE EXCEPTION 'audit retention purges % chains and was given % boundary checkpoints',
            coalesce(array_length(plan.chains, 1), 0), jsonb_array_length(cps)
            USING ERRCODE = 'RA003';
    END IF;
    FOR i IN 1 .. coalesce(array_length(plan.chains, 1), 0) LOOP
        IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(cps) AS g(j)
                        WHERE coalesce(j->>'chain', '') = plan.chains[i] AND (j->>'seq')::bigint = plan.seqs[i]
                          AND j->>'head' = encode(plan.heads[i], 'hex') AND coalesce((j->>'boundary')::boolean, false)) THEN
            RAISE EXCEPTION 'audit retention needs the boundary checkpoint of chain % at seq %', quote_literal(plan.chains[i]), plan.seqs[i]
                USING ERRCODE = 'RA003';
        END IF;
        SELECT coalesce(max(k.seq), 0) INTO prev FROM audit_checkpoints k WHERE k.chain = plan.chains[i] AND k.boundary;
        purged := purged + GREATEST(plan.seqs[i] - prev, 0);
    END LOOP;

    FOREACH part IN ARRAY plan.parts LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
    DELETE FROM audit_checkpoints k USING jsonb_array_elements(cps) AS g(j)
     WHERE k.chain = coalesce(j->>'chain', '') AND k.seq <= (j->>'seq')::bigint;
    INSERT INTO audit_checkpoints (chain, seq, time, head, boundary, stored)
        SELECT coalesce(j->>'chain', ''), (j->>'seq')::bigint, (j->>'time')::timestamptz, decode(j->>'head', 'hex'), true,
               decode(j->>'_raw', 'base64')
          FROM jsonb_array_elements(cps) AS g(j);
    RETURN purged;
END
$$;
-- +goose StatementEnd

-- The broker appends and reads; it never updates or deletes (no grant), and
-- reaches partitions and retention only through the functions above.
REVOKE ALL ON audit_records, audit_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON audit_records, audit_checkpoints TO relais_broker;
REVOKE ALL ON FUNCTION relais_audit_ensure_partitions(timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION relais_audit_purge(timestamptz, bytea[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION relais_audit_purge_plan(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION relais_audit_ensure_partitions(timestamptz[]) TO relais_broker;
GRANT EXECUTE ON FUNCTION relais_audit_purge(timestamptz, bytea[]) TO relais_broker, relais_retention;
GRANT EXECUTE ON FUNCTION relais_audit_head(text), relais_audit_expect_head(text, bigint, bytea) TO relais_broker;
GRANT EXECUTE ON FUNCTION relais_audit_purge_plan(timestamptz) TO relais_broker, relais_retention;
-- Retention reads what it is about to drop (pglog's Purge), and may run
-- with its own credential.
GRANT SELECT ON audit_records, audit_checkpoints TO relais_retention;

-- +goose Down
DROP FUNCTION relais_audit_purge(timestamptz, bytea[]);
DROP FUNCTION relais_audit_purge_plan(timestamptz);
DROP FUNCTION relais_audit_ensure_partitions(timestamptz[]);
DROP FUNCTION relais_audit_expect_head(text, bigint, bytea);
DROP FUNCTION relais_audit_head(text);
DROP TABLE audit_checkpoints;
DROP TABLE audit_records;
