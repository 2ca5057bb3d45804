-- Statements of the PostgreSQL store, one per `-- name:` block (see postgres.py).

-- name: insert_events
INSERT INTO events (id, app_id, event_type, received_at, payload, headers, matched_rules, idem_key)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::bytea[], $6::text[],
                     $7::text[], $8::text[])

-- name: insert_deliveries
-- A pending ordered row takes its place in accept order from the sequence, in array order.
INSERT INTO deliveries (id, event_id, rule_id, target_id, action_type, url, status, body, retry,
    secret_env, timeout_seconds, disable_after, created_at, next_attempt_at, attempt_count,
    headers, leased_until, lease_token, host, ordering_key, ordering_seq)
SELECT *, CASE WHEN u.ordering_key IS NOT NULL AND u.status = 'pending'
    THEN nextval('deliveries_ordering_seq') END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::bytea[], $9::text[], $10::text[], $11::float8[], $12::int[], $13::float8[],
    $14::float8[], $15::int[], $16::text[], $17::float8[], $18::text[], $19::text[], $20::text[])
    AS u (id, event_id, rule_id, target_id, action_type, url, status, body, retry, secret_env,
    timeout_seconds, disable_after, created_at, next_attempt_at, attempt_count, headers,
    leased_until, lease_token, host, ordering_key)

-- name: set_attempts
UPDATE deliveries SET attempts = $2 WHERE id = $1

-- name: take_idempotency_key
-- A new key, or one whose event is older than the time to live (it passes to this event);
-- answers no row for a live duplicate. Concurrent holders of one key wait on its row.
INSERT INTO idempotency_keys AS k (app_id, idem_key, event_id, received_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (app_id, idem_key) DO UPDATE
    SET event_id = excluded.event_id, received_at = excluded.received_at
    WHERE k.received_at < excluded.received_at - $5
RETURNING event_id

-- name: idempotency_owner
SELECT event_id FROM idempotency_keys WHERE app_id = $1 AND idem_key = $2

-- name: claim_due
-- SKIP LOCKED: processes claiming at once take disjoint rows without waiting on each
-- other; the lease token written here is what finish/renew/release check.
-- An ordered row is taken only as the head of its key: no earlier pending row of the key
-- (one probe of deliveries_ordering), and none of the key in flight (a row numbered
-- earlier whose commit landed later, from another gateway, waits for it).
WITH due AS (
    SELECT id FROM deliveries AS c
    WHERE status = 'pending' AND next_attempt_at <= $1
      AND (leased_until IS NULL OR leased_until <= $1)
      AND host <> ALL ($5::text[])
      AND (c.ordering_key IS NULL OR (
        NOT EXISTS (SELECT 1 FROM deliveries AS e
            WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
              AND e.ordering_seq < c.ordering_seq)
        AND NOT EXISTS (SELECT 1 FROM deliveries AS e
            WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
              AND e.leased_until > $1 AND e.id <> c.id)))
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries AS d SET leased_until = $3, lease_token = $4
FROM due WHERE d.id = due.id
RETURNING d.id, d.event_id, d.rule_id, d.target_id, d.action_type, d.url, d.status, d.body,
    d.retry, d.secret_env, d.timeout_seconds, d.disable_after, d.created_at,
    d.next_attempt_at, d.attempt_count, d.headers, d.ordering_key

-- name: has_due
SELECT EXISTS (
    SELECT 1 FROM deliveries AS c
    WHERE status = 'pending' AND next_attempt_at <= $1
      AND (leased_until IS NULL OR leased_until <= $1)
      AND (c.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e
            WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
              AND e.ordering_seq < c.ordering_seq))
)

-- name: finish_attempt
-- The fence: only the row still pending under this holder's token takes the outcome.
UPDATE deliveries
SET status = $3, next_attempt_at = $4, leased_until = NULL, lease_token = NULL,
    attempt_count = attempt_count + 1, attempts = array_append(attempts, $2)
WHERE id = $1 AND status = 'pending' AND lease_token = $5

-- name: finish_attempts
-- The same fence for a batch of (delivery, attempt, status, next attempt, token).
UPDATE deliveries AS d
SET status = f.status, next_attempt_at = f.next_at, leased_until = NULL, lease_token = NULL,
    attempt_count = d.attempt_count + 1, attempts = array_append(d.attempts, f.attempt)
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[])
    AS f (id, attempt, status, next_at, token)
WHERE d.id = f.id AND d.status = 'pending' AND d.lease_token = f.token
RETURNING d.id

-- name: renew
UPDATE deliveries AS d SET leased_until = $1
FROM unnest($2::text[], $3::text[]) AS h (id, token)
WHERE d.id = h.id AND d.lease_token = h.token AND d.status = 'pending'
RETURNING d.id

-- name: release
UPDATE deliveries AS d SET leased_until = NULL, lease_token = NULL
FROM unnest($1::text[], $2::text[]) AS h (id, token)
WHERE d.id = h.id AND d.lease_token = h.token AND d.status = 'pending'

-- name: requeue
-- A finished ordered delivery retried by hand joins the back of its key.
UPDATE deliveries
SET status = 'pending', next_attempt_at = $2, leased_until = NULL, lease_token = NULL,
    ordering_seq = CASE WHEN ordering_key IS NOT NULL AND status <> 'pending'
        THEN nextval('deliveries_ordering_seq') ELSE ordering_seq END
WHERE id = ANY ($1::text[])

-- name: cancel
-- Pending deliveries become cancelled and lose their lease: a holder's finish then matches
-- no row (its token is gone) and records nothing.
UPDATE deliveries
SET status = 'cancelled', next_attempt_at = NULL, leased_until = NULL, lease_token = NULL
WHERE id = ANY ($1::text[]) AND status = 'pending'
RETURNING id

-- name: event_partitions
-- Every day partition of `events` with its lower bound (epoch seconds).
SELECT c.relname AS name,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''?([-0-9.e+]+)')::float8 AS lower
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
ORDER BY lower

-- name: commit_batch
-- A whole group commit in one statement, so one round trip and no BEGIN/COMMIT: the
-- batch's events ($1-$8, as insert_events), their deliveries ($9-$28, as
-- insert_deliveries) and its finished attempts ($29-$33, as finish_attempts, with the
-- same fence). A data-modifying WITH runs whether or not the UPDATE reads it, and the
-- statement commits or fails as a whole.
WITH new_events AS (
    INSERT INTO events (id, app_id, event_type, received_at, payload, headers, matched_rules,
        idem_key)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::bytea[],
                         $6::text[], $7::text[], $8::text[])
), new_deliveries AS (
    INSERT INTO deliveries (id, event_id, rule_id, target_id, action_type, url, status, body,
        retry, secret_env, timeout_seconds, disable_after, created_at, next_attempt_at,
        attempt_count, headers, leased_until, lease_token, host, ordering_key, ordering_seq)
    SELECT *, CASE WHEN u.ordering_key IS NOT NULL AND u.status = 'pending'
        THEN nextval('deliveries_ordering_seq') END
    FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::bytea[], $17::text[], $18::text[], $19::float8[],
        $20::int[], $21::float8[], $22::float8[], $23::int[], $24::text[], $25::float8[],
        $26::text[], $27::text[], $28::text[])
        AS u (id, event_id, rule_id, target_id, action_type, url, status, body, retry,
        secret_env, timeout_seconds, disable_after, created_at, next_attempt_at,
        attempt_count, headers, leased_until, lease_token, host, ordering_key)
)
UPDATE deliveries AS d
SET status = f.status, next_attempt_at = f.next_at, leased_until = NULL, lease_token = NULL,
    attempt_count = d.attempt_count + 1, attempts = array_append(d.attempts, f.attempt)
FROM unnest($29::text[], $30::text[], $31::text[], $32::float8[], $33::text[])
    AS f (id, attempt, status, next_at, token)
WHERE d.id = f.id AND d.status = 'pending' AND d.lease_token = f.token
RETURNING d.id
