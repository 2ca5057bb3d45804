-- The SQLite store's schema, applied by the writer at every start (idempotent:
-- IF NOT EXISTS everywhere; columns added later are migrated in sqlite_writer.py).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('apps_version', 0), ('targets_version', 0), ('ordering_seq', 0);
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL, rate REAL, burst INTEGER, schema TEXT, signing_secret TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    previous_token_hash TEXT, previous_token_expires_at REAL,
    signature_scheme TEXT NOT NULL DEFAULT 'standard-webhooks'
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, app_id TEXT NOT NULL, event_type TEXT, received_at REAL NOT NULL,
    payload BLOB NOT NULL, headers TEXT NOT NULL, matched_rules TEXT NOT NULL, idem_key TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idem ON events (app_id, idem_key)
    WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_app ON events (app_id, id);
CREATE INDEX IF NOT EXISTS events_type ON events (event_type, id);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, event_id TEXT NOT NULL, rule_id TEXT, target_id TEXT,
    action_type TEXT NOT NULL, url TEXT NOT NULL, status TEXT NOT NULL, body BLOB,
    retry TEXT NOT NULL, secret_env TEXT, timeout_seconds REAL, disable_after INTEGER,
    created_at REAL NOT NULL, next_attempt_at REAL, leased_until REAL,
    attempt_count INTEGER NOT NULL DEFAULT 0, headers TEXT NOT NULL DEFAULT '[]',
    lease_token TEXT, host TEXT, rate_limit TEXT, ordering_key TEXT, ordering_seq INTEGER
) WITHOUT ROWID;
-- Covering for claims: the walk past a full host's due rows (a bulkhead skip) reads only
-- this index, never the rows. A row from before the host column has host NULL and is
-- never skipped. The ordering columns are NULL on unordered rows (a byte each), and let
-- the claim test an ordered row for being the head of its key without reading the row.
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_due_host;
CREATE INDEX IF NOT EXISTS deliveries_due_order
    ON deliveries (next_attempt_at, leased_until, host, ordering_key, ordering_seq)
    WHERE status = 'pending';
-- FIFO ordering: the pending deliveries of one key in accept order. A claim takes an
-- ordered row only if this index holds no earlier pending row of its key (one probe).
CREATE INDEX IF NOT EXISTS deliveries_ordering ON deliveries (ordering_key, ordering_seq)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
CREATE INDEX IF NOT EXISTS deliveries_target ON deliveries (target_id, id)
    WHERE target_id IS NOT NULL;
-- Held deliveries by target in accept order: the probe takes the first, a release all.
CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries (target_id, id)
    WHERE status = 'held';
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL, status_code INTEGER,
    latency_ms REAL NOT NULL, error TEXT, response_excerpt TEXT, retry_after REAL,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS targets (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, events TEXT NOT NULL,
    filter TEXT, status TEXT NOT NULL, retry TEXT NOT NULL, disable_after INTEGER,
    description TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0, rate REAL, burst INTEGER, ordering TEXT,
    ordering_key TEXT
);
-- The delivery queue depth (a /metrics gauge), kept by triggers: counting the pending rows
-- walked the whole due index, half a second of CPU at a million queued. Counted once when
-- the triggers are first created (a database from before them), then kept exact: the
-- count runs only when the row is missing, not at every start.
INSERT INTO meta SELECT 'pending_deliveries',
    (SELECT count(*) FROM deliveries WHERE status = 'pending')
    WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'pending_deliveries');
CREATE TRIGGER IF NOT EXISTS deliveries_pending_added AFTER INSERT ON deliveries
    WHEN NEW.status = 'pending'
    BEGIN UPDATE meta SET value = value + 1 WHERE key = 'pending_deliveries'; END;
CREATE TRIGGER IF NOT EXISTS deliveries_pending_removed AFTER DELETE ON deliveries
    WHEN OLD.status = 'pending'
    BEGIN UPDATE meta SET value = value - 1 WHERE key = 'pending_deliveries'; END;
CREATE TRIGGER IF NOT EXISTS deliveries_pending_changed AFTER UPDATE OF status ON deliveries
    WHEN (OLD.status = 'pending') != (NEW.status = 'pending')
    BEGIN UPDATE meta SET value = value + (NEW.status = 'pending') - (OLD.status = 'pending')
        WHERE key = 'pending_deliveries'; END;
