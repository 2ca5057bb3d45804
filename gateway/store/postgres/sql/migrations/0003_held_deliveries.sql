-- Held, not dropped: deliveries for a disabled webhook target wait with status 'held';
-- a target disabled after failures is probed again on a doubling schedule.
ALTER TABLE targets
    ADD COLUMN reenable_after double precision NOT NULL DEFAULT 600,
    ADD COLUMN disabled_at double precision,
    ADD COLUMN next_probe_at double precision,
    ADD COLUMN probe_interval double precision,
    ADD COLUMN probe_delivery_id text COLLATE "C";
-- a target's held deliveries in accept order: the probe takes the first, a release all
CREATE INDEX deliveries_held ON deliveries (target_id, id) WHERE status = 'held';
