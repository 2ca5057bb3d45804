-- FIFO ordering (`ordering = "fifo"` on a rule action): a delivery's ordering key and its
-- place in accept order. Numbered 0003: 0002 is taken by delivery rate limits (another
-- branch); the runner applies whatever is missing in order, so a gap is harmless.
-- The columns are NULL on unordered rows, and no index holds `leased_until`, so a claim's
-- UPDATE of an unordered row stays a HOT update, as before.
ALTER TABLE deliveries ADD COLUMN ordering_key text COLLATE "C", ADD COLUMN ordering_seq bigint;
CREATE SEQUENCE deliveries_ordering_seq;
-- A claim takes an ordered row only if this index holds no earlier pending row of its key.
CREATE INDEX deliveries_ordering ON deliveries (ordering_key, ordering_seq)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;
-- A webhook target's own ordering: "fifo" or NULL, and its key as JSON-Logic JSON.
ALTER TABLE targets ADD COLUMN ordering text, ADD COLUMN ordering_key text;
