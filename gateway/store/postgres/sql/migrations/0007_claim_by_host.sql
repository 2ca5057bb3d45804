-- hookgate PostgreSQL schema, version 7: a claim that skips hosts does not read their rows.
--
-- A worker whose queue for a host is full claims with that host in `skip`. The claim
-- walked deliveries_due in time order and dropped the skipped host's rows one by one, so
-- a hung host's backlog at the head of the index was read on every claim: 31 ms per claim
-- at 100 000 due rows of one skipped host, against 1.1 ms without a skip (2-core AMD EPYC,
-- PostgreSQL 15.20, 2026-12-04), and it grows with the backlog while every ingest wakes a
-- claim. With `skip` non-empty, the claim now visits hosts instead: one probe of
-- deliveries_due_host per host with pending rows (a loose index scan) and, for each host
-- not skipped, its earliest due rows. The rule for ordered rows and the lease check are
-- the ones of version 5; without a skip the claim is the walk of version 5. The final
-- sort of the few rows taken is costed as forbidden (enable_sort = off holds for the whole
-- function), a cost that would have PostgreSQL JIT-compile the query on every claim
-- (650 ms): jit is off here. The rule for ordered rows is written out in both queries: as
-- a SQL function of their own, called per row, a claim over 2 000 pending ordered rows
-- took 85 to 134 ms instead of 15 ms (one run each).
CREATE INDEX deliveries_due_host ON deliveries (host, next_attempt_at) WHERE status = 'pending';

CREATE OR REPLACE FUNCTION hookgate_due_ids(now double precision, n integer, skip text[])
RETURNS SETOF text
LANGUAGE plpgsql ROWS 100
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF cardinality(skip) = 0 THEN
        RETURN QUERY
            SELECT c.id::text FROM deliveries AS c
            WHERE c.status = 'pending' AND c.next_attempt_at <= now
              AND (c.leased_until IS NULL OR c.leased_until <= now)
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
        RETURN;
    END IF;
    -- Every host with a pending row, one index probe each; a skipped host's rows are never
    -- read. Each other host gives its earliest n due rows (locked as they are taken), and
    -- the earliest n of those are the claim, the same rows the walk would have taken.
    RETURN QUERY
        WITH RECURSIVE hosts (host) AS (
            SELECT min(h.host) FROM deliveries AS h WHERE h.status = 'pending'
            UNION ALL
            SELECT (SELECT min(h.host) FROM deliveries AS h
                    WHERE h.status = 'pending' AND h.host > hosts.host)
            FROM hosts WHERE hosts.host IS NOT NULL
        )
        SELECT due.id::text FROM hosts CROSS JOIN LATERAL (
            SELECT c.id, c.next_attempt_at FROM deliveries AS c
            WHERE c.host = hosts.host AND c.status = 'pending' AND c.next_attempt_at <= now
              AND (c.leased_until IS NULL OR c.leased_until <= now)
              AND (c.ordering_key IS NULL OR (
                NOT EXISTS (SELECT 1 FROM deliveries AS e
                    WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
                      AND e.ordering_seq < c.ordering_seq)
                AND NOT EXISTS (SELECT 1 FROM deliveries AS e
                    WHERE e.ordering_key = c.ordering_key AND e.status = 'pending'
                      AND e.leased_until > now AND e.id <> c.id)))
            ORDER BY c.next_attempt_at
            LIMIT n
            FOR UPDATE OF c SKIP LOCKED
        ) AS due
        WHERE hosts.host IS NOT NULL AND hosts.host <> ALL (skip)
        ORDER BY due.next_attempt_at
        LIMIT n;
END
$$;
