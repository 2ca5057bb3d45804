-- Statements of the PostgreSQL store, one per `-- name:` block (see postgres.py).

-- name: insert_events
-- The batch's events as one array of `event_row` values (migration 0006 says why).
INSERT INTO events (id, app_id, event_type, received_at, payload, headers, matched_rules, idem_key)
SELECT * FROM unnest($1::event_row[])

-- name: insert_deliveries
-- A pending (or held) ordered row takes its place in accept order from the sequence, in
-- array order: a held one keeps it for when its target is active again.
INSERT INTO deliveries (id, event_id, rule_id, target_id, action_type, url, status, body, retry,
    secret_env, timeout_seconds, disable_after, created_at, next_attempt_at, attempt_count,
    headers, leased_until, lease_token, host, rate_limit, ordering_key, ordering_seq)
SELECT *, CASE WHEN u.ordering_key IS NOT NULL AND u.status IN ('pending', 'held')
    THEN nextval('deliveries_ordering_seq') END
FROM unnest($1::delivery_row[]) AS u

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
-- SKIP LOCKED (in hookgate_due_ids, with the rule for ordered rows): processes claiming at
-- once take disjoint rows without waiting on each other; the lease token written here is
-- what finish/renew/release check.
UPDATE deliveries AS d SET leased_until = $3, lease_token = $4
FROM hookgate_due_ids($1, $2, $5::text[]) AS due (id)
WHERE d.id = due.id
RETURNING d.id, d.event_id, d.rule_id, d.target_id, d.action_type, d.url, d.status, d.body,
    d.retry, d.secret_env, d.timeout_seconds, d.disable_after, d.created_at,
    d.next_attempt_at, d.attempt_count, d.headers, d.rate_limit, d.ordering_key

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
FROM unnest($1::finish_row[]) AS f
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

-- name: defer
-- finish_attempt's fence without an attempt: due again at $3, unleased, count unchanged.
UPDATE deliveries SET next_attempt_at = $3, leased_until = NULL, lease_token = NULL
WHERE id = $1 AND status = 'pending' AND lease_token = $2

-- name: take_delivery_slot
-- GCRA in one statement ($1 key, $2 now, $3 interval = 1 / rate, $4 burst), the maths of
-- gateway/limits/gcra.lua: the upsert locks the bucket's row, so gateways taking from one
-- bucket at once are serialised, and its WHERE is evaluated on the locked row. Answers 0
-- when a slot was spent, else the seconds until one is free (nothing spent).
WITH taken AS (
    INSERT INTO delivery_slots AS s (key, tat) VALUES ($1, $2::float8 + $3::float8)
    ON CONFLICT (key) DO UPDATE SET tat = greatest(s.tat, $2::float8) + $3::float8
    WHERE greatest(s.tat, $2::float8) - ($4::int - 1) * $3::float8 <= $2::float8 + 1e-6
    RETURNING 1
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM taken) THEN 0.0::float8
    ELSE greatest(
        (SELECT tat FROM delivery_slots WHERE key = $1) - ($4::int - 1) * $3::float8
            - $2::float8,
        1e-6)
    END

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
-- batch's events ($1, as insert_events), their deliveries ($2, as insert_deliveries) and
-- its finished attempts ($3, as finish_attempts, with the same fence). A data-modifying
-- WITH runs whether or not the UPDATE reads it, and the statement commits or fails as a
-- whole.
WITH new_events AS (
    INSERT INTO events (id, app_id, event_type, received_at, payload, headers, matched_rules,
        idem_key)
    SELECT * FROM unnest($1::event_row[])
), new_deliveries AS (
    INSERT INTO deliveries (id, event_id, rule_id, target_id, action_type, url, status, body,
        retry, secret_env, timeout_seconds, disable_after, created_at, next_attempt_at,
        attempt_count, headers, leased_until, lease_token, host, rate_limit, ordering_key,
        ordering_seq)
    SELECT *, CASE WHEN u.ordering_key IS NOT NULL AND u.status IN ('pending', 'held')
        THEN nextval('deliveries_ordering_seq') END
    FROM unnest($2::delivery_row[]) AS u
)
UPDATE deliveries AS d
SET status = f.status, next_attempt_at = f.next_at, leased_until = NULL, lease_token = NULL,
    attempt_count = d.attempt_count + 1, attempts = array_append(d.attempts, f.attempt)
FROM unnest($3::finish_row[]) AS f
WHERE d.id = f.id AND d.status = 'pending' AND d.lease_token = f.token
RETURNING d.id

-- name: hold_pending
-- A target was disabled: its pending deliveries no process holds wait as held. A row a
-- claim is taking is locked by it, and re-checked here once that claim commits.
UPDATE deliveries
SET status = 'held', next_attempt_at = NULL, leased_until = NULL, lease_token = NULL
WHERE target_id = $1 AND status = 'pending' AND (leased_until IS NULL OR leased_until <= $2)

-- name: unhold
-- Every held delivery of target $1 becomes $2 ('pending', due $3, or 'skipped').
UPDATE deliveries
SET status = $2, next_attempt_at = $3, leased_until = NULL, lease_token = NULL
WHERE target_id = $1 AND status = 'held'
RETURNING id

-- name: hold
-- The fence of `release`, and the target must still be disabled with this row not its
-- probe. FOR SHARE: a concurrent re-enable (which locks the target row) either finishes
-- first, and this sees the target active, or waits for this, and then releases the row.
UPDATE deliveries AS d
SET status = 'held', next_attempt_at = NULL, leased_until = NULL, lease_token = NULL
FROM unnest($1::text[], $2::text[]) AS h (id, token)
WHERE d.id = h.id AND d.lease_token = h.token AND d.status = 'pending'
  AND EXISTS (
    SELECT 1 FROM targets AS t
    WHERE t.id = d.target_id AND t.status = 'disabled'
      AND t.probe_delivery_id IS DISTINCT FROM d.id
    FOR SHARE
  )
RETURNING d.id

-- name: held_targets
-- The distinct targets of held deliveries, one index probe each (a loose index scan).
WITH RECURSIVE t (id) AS (
    SELECT (SELECT min(target_id) FROM deliveries WHERE status = 'held')
    UNION ALL
    SELECT (SELECT min(target_id) FROM deliveries WHERE status = 'held' AND target_id > t.id)
    FROM t WHERE t.id IS NOT NULL
)
SELECT id FROM t WHERE id IS NOT NULL

-- name: start_probe
-- The oldest held delivery of target $1 becomes pending, due $2: the probe.
UPDATE deliveries
SET status = 'pending', next_attempt_at = $2, leased_until = NULL, lease_token = NULL
WHERE id = (
    SELECT id FROM deliveries WHERE target_id = $1 AND status = 'held' ORDER BY id LIMIT 1
)
RETURNING id
