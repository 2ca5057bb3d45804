-- hookgate PostgreSQL schema, version 1. Ids are compared byte for byte (COLLATE "C"):
-- they sort by creation time, and every list walks an (x, id) index backwards.

CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO meta VALUES ('apps_version', 0), ('targets_version', 0);

CREATE TABLE apps (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL UNIQUE,
    token_hash text NOT NULL UNIQUE,
    enabled boolean NOT NULL,
    rate double precision,
    burst integer,
    schema text,
    signing_secret text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    previous_token_hash text,
    previous_token_expires_at double precision,
    signature_scheme text NOT NULL DEFAULT 'standard-webhooks'
);

-- Events are partitioned by day of `received_at` (UTC): retention drops whole partitions,
-- so the bulk of the data (payloads) leaves without dead rows or a vacuum to pay.
-- A partitioned table's primary key must hold the partition key, hence (id, received_at).
CREATE TABLE events (
    id text COLLATE "C" NOT NULL,
    app_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C",
    received_at double precision NOT NULL,
    payload bytea NOT NULL,
    headers text NOT NULL,
    matched_rules text NOT NULL,
    idem_key text,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX events_app ON events (app_id, id);
CREATE INDEX events_type ON events (event_type, id);

-- Unique across every partition (a partitioned unique index cannot be), and small: one
-- row per key still inside `ingest.idempotency_ttl_seconds`.
CREATE TABLE idempotency_keys (
    app_id text COLLATE "C" NOT NULL,
    idem_key text NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    received_at double precision NOT NULL,
    PRIMARY KEY (app_id, idem_key)
);
CREATE INDEX idempotency_keys_time ON idempotency_keys (received_at);

CREATE TABLE deliveries (
    id text COLLATE "C" PRIMARY KEY,
    event_id text COLLATE "C" NOT NULL,
    rule_id text COLLATE "C",
    target_id text COLLATE "C",
    action_type text NOT NULL,
    url text NOT NULL,
    status text COLLATE "C" NOT NULL,
    body bytea,
    retry text NOT NULL,
    secret_env text,
    timeout_seconds double precision,
    disable_after integer,
    created_at double precision NOT NULL,
    next_attempt_at double precision,
    attempt_count integer NOT NULL DEFAULT 0,
    headers text NOT NULL,
    leased_until double precision,
    lease_token text,
    host text NOT NULL,
    -- each attempt as its JSON object, in order: appended by the same UPDATE that checks
    -- the lease, so the fence and the record are one statement
    attempts text[] NOT NULL DEFAULT '{}'
);
-- the claim walks this one, oldest due first, only over pending rows
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_event ON deliveries (event_id, id);
CREATE INDEX deliveries_status ON deliveries (status, id);
CREATE INDEX deliveries_target ON deliveries (target_id, id) WHERE target_id IS NOT NULL;
CREATE INDEX deliveries_rule ON deliveries (rule_id, id) WHERE rule_id IS NOT NULL;
CREATE INDEX deliveries_created ON deliveries (created_at);

CREATE TABLE targets (
    id text COLLATE "C" PRIMARY KEY,
    url text NOT NULL,
    secret text NOT NULL,
    events text NOT NULL,
    filter text,
    status text NOT NULL,
    retry text NOT NULL,
    disable_after integer,
    description text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    consecutive_failures integer NOT NULL DEFAULT 0
);

-- The partition holding epoch second `at`, created when missing (`events_YYYYMMDD`, UTC
-- days). Several gateways may ask at once: an advisory lock serialises the creation.
CREATE FUNCTION hookgate_event_partition(at double precision) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    day_start double precision := floor(at / 86400) * 86400;
    part text := 'events_' || to_char(to_timestamp(day_start) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF to_regclass(quote_ident(part)) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.events partitions'));
        IF to_regclass(quote_ident(part)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
                part, day_start, day_start + 86400
            );
        END IF;
    END IF;
    RETURN part;
END
$$;
