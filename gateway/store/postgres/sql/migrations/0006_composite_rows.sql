-- hookgate PostgreSQL schema, version 6: the row types the group commit sends.
--
-- A group commit sent one array per column (34 parameters: 8 for its events, 21 for their
-- deliveries, 5 for its finished attempts) and unnested them side by side. asyncpg spends
-- a fixed cost on every parameter and checks every element of an array for being a
-- sub-array, so most of the gateway's share of a commit was that bookkeeping. Sent as one
-- array of these composite values per table (3 parameters), a commit of 17 events with one
-- delivery each took 185 instead of 359 us of client CPU and 275 instead of 375 us in the
-- server backend (`unnest` of a composite array yields its fields as columns; medians of
-- six alternated blocks of 600 commits, 2-core AMD EPYC, PostgreSQL 15.20, 2026-12-04).
-- The fields mirror the columns they fill, collations included; a migration that changes
-- those columns changes these types with them.
CREATE TYPE event_row AS (
    id text COLLATE "C",
    app_id text COLLATE "C",
    event_type text COLLATE "C",
    received_at double precision,
    payload bytea,
    headers text,
    matched_rules text,
    idem_key text
);

CREATE TYPE delivery_row AS (
    id text COLLATE "C",
    event_id text COLLATE "C",
    rule_id text COLLATE "C",
    target_id text COLLATE "C",
    action_type text,
    url text,
    status text COLLATE "C",
    body bytea,
    retry text,
    secret_env text,
    timeout_seconds double precision,
    disable_after integer,
    created_at double precision,
    next_attempt_at double precision,
    attempt_count integer,
    headers text,
    leased_until double precision,
    lease_token text,
    host text,
    rate_limit text,
    ordering_key text COLLATE "C"
);

-- A finished attempt, as `finish_attempts` fences it: the delivery, the attempt's JSON,
-- the status and next attempt it leaves, and the lease token that must still hold it.
CREATE TYPE finish_row AS (
    id text COLLATE "C",
    attempt text,
    status text COLLATE "C",
    next_at double precision,
    token text
);
