-- Delivery rate limits (docs/design.md): a rule action's limit is snapshotted on its
-- deliveries as [key, rate, burst] (JSON); a webhook target keeps its own rate and burst.
ALTER TABLE deliveries ADD COLUMN rate_limit text;
ALTER TABLE targets ADD COLUMN rate double precision, ADD COLUMN burst integer;

-- One GCRA bucket per rate-limit key, shared by every gateway on this database: its
-- theoretical arrival time (epoch seconds). Rows are tiny and few (one per rate-limited
-- target or rule action); a full bucket's row is simply in the past.
CREATE TABLE delivery_slots (
    key text COLLATE "C" PRIMARY KEY,
    tat double precision NOT NULL
);
