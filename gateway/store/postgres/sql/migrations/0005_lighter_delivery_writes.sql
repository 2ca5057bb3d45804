-- hookgate PostgreSQL schema, version 5: fewer index writes per delivery.
--
-- Every delivery row is written three times: the insert, the claim (lease columns) and
-- the finish (status, next attempt, attempts). A write that is not HOT (heap-only tuple)
-- adds an entry to every index of the table, and a write is HOT only when it changes no
-- indexed column AND its page has room for the new version. So (the migration runs in one
-- transaction: on a large `deliveries` the index build below holds its writes until done,
-- so run `hookgate migrate` at a quiet moment):
--
-- Half of each page is left free at insert: the claim, which changes only unindexed
-- columns, then finds room beside the row and is HOT (no index entry at all, and the
-- claim's walk along deliveries_due meets one entry per row, not one per version).
-- Takes effect on pages written from now on.
ALTER TABLE deliveries SET (fillfactor = 50);

-- deliveries_created (created_at) served only failed_since, which now bounds the id
-- instead (ids begin with their millisecond, as list_deliveries' `since` does) and walks
-- the status index.
DROP INDEX deliveries_created;

-- The status lists that matter are the few rows not succeeded (pending, failed, skipped,
-- cancelled): those keep an index. Listing `succeeded`, most rows, walks the primary key
-- backwards and finds a page at once; and a finish that succeeds no longer adds an entry.
DROP INDEX deliveries_status;
CREATE INDEX deliveries_status_unsucceeded ON deliveries (status, id)
    WHERE status <> 'succeeded';

-- The due rows a claim takes (`claim_due` in queries.sql), oldest first. Given few rows
-- in its statistics (a young table, or one not analysed since a backlog built up), the
-- planner read EVERY due row (a bitmap scan) and sorted them to keep the first `n`: 19 ms
-- per claim at 30 000 pending, growing with the backlog, on every poll. The SET clauses
-- hold for this function only and leave it one plan: walk deliveries_due in order and
-- stop after `n` rows taken.
CREATE FUNCTION hookgate_due_ids(now double precision, n integer, skip text[])
RETURNS SETOF text
LANGUAGE plpgsql ROWS 100
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off AS $$
BEGIN
    -- An ordered row is taken only as the head of its key: no earlier pending row of the
    -- key (one probe of deliveries_ordering), and none of the key in flight (a row
    -- numbered earlier whose commit landed later, from another gateway, waits for it).
    RETURN QUERY
        SELECT c.id::text FROM deliveries AS c
        WHERE c.status = 'pending' AND c.next_attempt_at <= now
          AND (c.leased_until IS NULL OR c.leased_until <= now)
          AND c.host <> ALL (skip)
          AND (c.ordering_key IS NULL OR (
            NOT EXISTS (SELECT 1 FROM deliveries AS e
                WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
                  AND e.ordering_seq < c.ordering_seq)
            AND NOT EXISTS (SELECT 1 FROM deliveries AS e
                WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
                  AND e.leased_until > now AND e.id <> c.id)))
        ORDER BY c.next_attempt_at
        LIMIT n
        FOR UPDATE OF c SKIP LOCKED;
END
$$;
