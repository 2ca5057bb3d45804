"""SQLite store (aiosqlite, WAL): the embedded default.

One writer connection applies every write from its own thread (aiosqlite's): concurrent
ingest requests are group-committed (one transaction, one fsync per batch, not per event)
and each request is answered only after the batch holding its event commits. The thread
drains the queue batch after batch without waiting for the event loop in between, and a
batch costs a handful of statements whatever its size (multi-row inserts), because every
statement has to win the GIL back from the busy loop. Reads use a second connection, which
WAL lets run beside the writer; a third does the WAL checkpoints in the background. Other
processes (the CLI) may open the same file: SQLite's locks and `busy_timeout` serialise
them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from actions.model import Attempt, Delivery, DeliveryStatus
from gateway.errors import StoreError
from gateway.models import App, Event, WebhookTarget
from gateway.store.base import Accepted, DeliveryFilter, Page

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('apps_version', 0), ('targets_version', 0);
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL, rate REAL, burst INTEGER, schema TEXT, signing_secret TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    previous_token_hash TEXT, previous_token_expires_at REAL
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
    attempt_count INTEGER NOT NULL DEFAULT 0, headers TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
CREATE INDEX IF NOT EXISTS deliveries_target ON deliveries (target_id, id);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL, status_code INTEGER,
    latency_ms REAL NOT NULL, error TEXT, response_excerpt TEXT, retry_after REAL,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS targets (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, events TEXT NOT NULL,
    filter TEXT, status TEXT NOT NULL, retry TEXT NOT NULL, disable_after INTEGER,
    description TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);
"""

APP_COLS = (
    "id, name, token_hash, enabled, rate, burst, schema, signing_secret, created_at, "
    "updated_at, previous_token_hash, previous_token_expires_at"
)
APP_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in APP_COLS.split(", ")[1:])
EVENT_COLS = "id, app_id, event_type, received_at, payload, headers, matched_rules, idem_key"
DELIVERY_COLS = (
    "id, event_id, rule_id, target_id, action_type, url, status, body, retry, secret_env, "
    "timeout_seconds, disable_after, created_at, next_attempt_at, attempt_count, headers"
)
TARGET_COLS = (
    "id, url, secret, events, filter, status, retry, disable_after, description, created_at, "
    "updated_at, consecutive_failures"
)
# The delivery columns as JSON values (bodies are UTF-8 JSON, so text is lossless).
DELIVERY_JSON_COLS = (
    "id, event_id, rule_id, target_id, action_type, url, status, CAST(body AS TEXT), "
    "json(retry), secret_env, timeout_seconds, disable_after, created_at, next_attempt_at, "
    "attempt_count, json(headers)"
)
INSERT_EVENT = f"INSERT INTO events ({EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_EVENT_KEYED = INSERT_EVENT + " ON CONFLICT DO NOTHING"
INSERT_EVENT_HEAD = f"INSERT INTO events ({EVENT_COLS}) VALUES "
INSERT_DELIVERY_HEAD = f"INSERT INTO deliveries ({DELIVERY_COLS}, leased_until) VALUES "
INSERT_ATTEMPT = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
MAX_VARIABLES = 32_766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32
INSERT_DELIVERY = (
    f"INSERT INTO deliveries ({DELIVERY_COLS}, leased_until) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
log = logging.getLogger("hookgate.store")
CHECKPOINT_SECONDS = 1.0
MAX_BATCH = 512


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _app_row(app: App) -> tuple[Any, ...]:
    return (
        app.id,
        app.name,
        app.token_hash,
        int(app.enabled),
        app.rate,
        app.burst,
        None if app.schema is None else _json(app.schema),
        app.signing_secret,
        app.created_at,
        app.updated_at,
        app.previous_token_hash,
        app.previous_token_expires_at,
    )


def _app(row: Sequence[Any]) -> App:
    return App(
        id=row[0],
        name=row[1],
        token_hash=row[2],
        enabled=bool(row[3]),
        rate=row[4],
        burst=row[5],
        schema=None if row[6] is None else orjson.loads(row[6]),
        signing_secret=row[7],
        created_at=row[8],
        updated_at=row[9],
        previous_token_hash=row[10],
        previous_token_expires_at=row[11],
    )


def _event_row(event: Event) -> tuple[Any, ...]:
    return (
        event.id,
        event.app_id,
        event.event_type,
        event.received_at,
        event.payload,
        _json(event.headers),
        _json(event.matched_rules),
        event.idempotency_key,
    )


def _event(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        app_id=row[1],
        event_type=row[2],
        received_at=row[3],
        payload=bytes(row[4]),
        headers=orjson.loads(row[5]),
        matched_rules=tuple(orjson.loads(row[6])),
        idempotency_key=row[7],
    )


def _delivery_row(d: Delivery, lease_until: float | None) -> tuple[Any, ...]:
    return (
        d.id,
        d.event_id,
        d.rule_id,
        d.target_id,
        d.action_type,
        d.url,
        d.status,
        d.body,
        _json(d.retry),
        d.secret_env,
        d.timeout_seconds,
        d.disable_after,
        d.created_at,
        d.next_attempt_at,
        d.attempt_count,
        _json(d.headers),
        lease_until,
    )


def _delivery(row: Sequence[Any], attempts: tuple[Attempt, ...] = ()) -> Delivery:
    return Delivery(
        id=row[0],
        event_id=row[1],
        rule_id=row[2],
        target_id=row[3],
        action_type=row[4],
        url=row[5],
        status=row[6],
        body=None if row[7] is None else bytes(row[7]),
        retry=tuple(orjson.loads(row[8])),
        secret_env=row[9],
        timeout_seconds=row[10],
        disable_after=row[11],
        created_at=row[12],
        next_attempt_at=row[13],
        attempt_count=row[14],
        headers=tuple(tuple(h) for h in orjson.loads(row[15])),
        attempts=attempts,
    )


def _delivery_from_json(row: list[Any]) -> Delivery:
    return Delivery(
        id=row[0],
        event_id=row[1],
        rule_id=row[2],
        target_id=row[3],
        action_type=row[4],
        url=row[5],
        status=row[6],
        body=None if row[7] is None else row[7].encode(),
        retry=tuple(row[8]),
        secret_env=row[9],
        timeout_seconds=row[10],
        disable_after=row[11],
        created_at=row[12],
        next_attempt_at=row[13],
        attempt_count=row[14],
        headers=tuple((name, value) for name, value in row[15]),
    )


def _attempt(row: Sequence[Any]) -> Attempt:
    return Attempt(
        at=row[0],
        status_code=row[1],
        latency_ms=row[2],
        error=row[3],
        response_excerpt=row[4],
        retry_after=row[5],
    )


def _target_row(t: WebhookTarget) -> tuple[Any, ...]:
    return (
        t.id,
        t.url,
        t.secret,
        _json(list(t.events)),
        None if t.filter is None else _json(t.filter),
        t.status,
        _json(t.retry if isinstance(t.retry, str) else list(t.retry)),
        t.disable_after,
        t.description,
        t.created_at,
        t.updated_at,
        t.consecutive_failures,
    )


def _target(row: Sequence[Any]) -> WebhookTarget:
    retry = orjson.loads(row[6])
    return WebhookTarget(
        id=row[0],
        url=row[1],
        secret=row[2],
        events=tuple(orjson.loads(row[3])),
        filter=None if row[4] is None else orjson.loads(row[4]),
        status=row[5],
        retry=retry if isinstance(retry, str) else tuple(retry),
        disable_after=row[7],
        description=row[8],
        created_at=row[9],
        updated_at=row[10],
        consecutive_failures=row[11],
    )


class _EventOp:
    """An ingest write waiting for the next group commit.

    Its rows are built here, in the event-loop thread: the writer thread then needs the
    GIL only to bind and run statements, and under load every GIL hand-off it waits for
    lengthens the commit every request is waiting on.
    """

    __slots__ = ("attempt_rows", "delivery_rows", "event", "event_row", "future")

    def __init__(
        self,
        event: Event,
        deliveries: Sequence[Delivery],
        lease_until: float | None,
        future: asyncio.Future[Any],
    ) -> None:
        self.event = event
        self.event_row = _event_row(event)
        self.delivery_rows = [_delivery_row(d, lease_until) for d in deliveries]
        self.attempt_rows = _attempt_rows(deliveries)
        self.future = future


class _CallOp:
    """Any other write: a function run on the writer connection inside a savepoint."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]):
        self.fn = fn
        self.future = future


class _FinishOp(_CallOp):
    """A recorded attempt: batched with the others of its group commit into two
    statements (`_apply_finishes`); `fn` is the one-row form for the careful path."""

    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        super().__init__(partial(_apply_finishes, rows=[row]), future)
        self.row = row


_Op = _EventOp | _CallOp


class SqliteStore:
    """`Store` on one SQLite file in WAL mode; see the module docstring for the write path."""

    def __init__(
        self, path: str | Path, *, synchronous: str = "full", idempotency_ttl: float = 86_400.0
    ) -> None:
        self._idempotency_ttl = idempotency_ttl
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._db: aiosqlite.Connection | None = None
        self._ro: aiosqlite.Connection | None = None
        # Ops waiting for the writer thread; `_draining` says a drain is queued or running
        # there (both guarded by `_lock`, shared with that thread).
        self._pending: collections.deque[_Op] = collections.deque()
        self._lock = threading.Lock()
        self._draining = False
        self._drains: set[asyncio.Future[Any]] = set()
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ckpt: aiosqlite.Connection | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    # lifecycle
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            await self._db.execute("PRAGMA busy_timeout=10000")
            # Checkpoints (copying the WAL into the database file, with an fsync) would run
            # inside whichever commit crosses the threshold, stalling every request waiting
            # on it; a connection of their own does them in the background instead.
            await self._db.execute("PRAGMA wal_autocheckpoint=0")
            await self._db.executescript(SCHEMA)
            self._ro = await aiosqlite.connect(self.path, isolation_level=None)
            await self._ro.execute("PRAGMA busy_timeout=10000")
            await self._ro.execute("PRAGMA query_only=ON")
            self._ckpt = await aiosqlite.connect(self.path, isolation_level=None)
            await self._ckpt.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        self._open = True
        self._checkpointer = asyncio.create_task(self._checkpoint_loop())

    async def _checkpoint_loop(self) -> None:
        """Checkpoint the WAL every `CHECKPOINT_SECONDS` (PASSIVE: never blocks writers),
        truncating it now and then so it does not grow without bound."""
        assert self._ckpt is not None
        rounds = 0
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            rounds += 1
            mode = "TRUNCATE" if rounds % 60 == 0 else "PASSIVE"
            try:
                await self._ckpt.execute(f"PRAGMA wal_checkpoint({mode})")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)

    async def close(self) -> None:
        self._open = False
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        if self._ckpt is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._ckpt.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for conn in (self._ro, self._ckpt, self._db):
            if conn is not None:
                await conn.close()
        self._db = self._ro = self._ckpt = None

    async def ping(self) -> None:
        await self._read("SELECT 1")

    # the write path
    def _enqueue(self, op: _Op) -> None:
        """Hand an op to the writer thread, starting a drain there if none is running.

        The drain (`_drain`) runs in aiosqlite's connection thread and commits batch after
        batch for as long as ops keep arriving, resolving each batch's futures through
        `call_soon_threadsafe`: the next batch never waits for the event loop to come
        round, so the thread is busy committing whenever there is work.
        """
        with self._lock:
            self._pending.append(op)
            if self._draining:
                return
            self._draining = True
        assert self._db is not None
        drain = asyncio.ensure_future(self._db._execute(self._drain))  # type: ignore[no-untyped-call]
        self._drains.add(drain)
        drain.add_done_callback(self._drain_done)

    def _drain_done(self, drain: asyncio.Future[Any]) -> None:
        self._drains.discard(drain)
        if drain.cancelled() or drain.exception() is None:
            return
        # The drain itself broke (not one batch): fail whatever it left behind.
        with self._lock:
            stranded = list(self._pending)
            self._pending.clear()
            self._draining = False
        error = StoreError(f"SQLite writer failed: {drain.exception()}")
        for op in stranded:
            if not op.future.done():
                op.future.set_exception(error)

    def _drain(self) -> None:
        """Writer thread: commit batches until no op is waiting."""
        loop = self._running_loop()
        while True:
            with self._lock:
                if not self._pending:
                    self._draining = False
                    return
                ops = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            try:
                results: list[tuple[bool, Any]] | BaseException = self._apply_batch(ops)
            except Exception as exc:
                results = exc
            loop.call_soon_threadsafe(_resolve, ops, results)

    def _apply_batch(self, ops: list[_Op]) -> list[tuple[bool, Any]]:
        """Run in the writer thread: apply every op in one transaction and commit once.

        Fast path: the whole batch in as few statements as possible (multi-row inserts,
        no savepoints). Every statement gives up the GIL while SQLite works and must win it
        back from the busy event-loop thread, so statements per batch, not rows, set the
        commit latency. If anything in it fails, the batch is rolled back and applied
        again op by op (savepoints): a bad write fails its own caller, never the other
        requests that happened to share its group commit.
        """
        assert self._db is not None
        conn = self._db._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            events = [op for op in ops if isinstance(op, _EventOp)]
            accepted = _apply_events(conn, events, self._idempotency_ttl) if events else []
            by_op: dict[int, Any] = {id(op): a for op, a in zip(events, accepted, strict=True)}
            finishes = [op for op in ops if isinstance(op, _FinishOp)]
            if finishes:
                _apply_finishes(conn, [op.row for op in finishes])
                by_op.update((id(op), None) for op in finishes)
            fast: list[tuple[bool, Any]] = [
                (True, by_op[id(op)]) if id(op) in by_op else (True, op.fn(conn))  # type: ignore[union-attr]
                for op in ops
            ]
            conn.execute("COMMIT")
            return fast
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return self._apply_careful(conn, ops)

    def _apply_careful(self, conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
        """The batch again, each op in its own savepoint."""
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            events = [op for op in ops if isinstance(op, _EventOp)]
            outcomes = _apply_event_ops(conn, events, self._idempotency_ttl) if events else {}
            for op in ops:
                if isinstance(op, _EventOp):
                    results.append(outcomes[id(op)])
                else:
                    results.append(_savepoint(conn, op.fn))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise StoreError("the SQLite store is not open")
        return self._loop

    async def _submit(self, op: _Op) -> Any:
        if not self._open:
            raise StoreError("the SQLite store is not open")
        self._enqueue(op)
        return await op.future

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._submit(_CallOp(fn, self._running_loop().create_future()))

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._ro is None:
            raise StoreError("the SQLite store is not open")
        try:
            return list(await self._ro.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

    # apps
    async def create_app(self, app: App) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO apps ({APP_COLS}) VALUES ({_marks(12)})", _app_row(app))
            _bump(conn, "apps_version")

        await self._write(fn)

    async def save_app(self, app: App) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            # An upsert on the id, not REPLACE: REPLACE would resolve a clash on the unique
            # name by deleting the other app; this raises instead.
            conn.execute(
                f"INSERT INTO apps ({APP_COLS}) VALUES ({_marks(12)}) ON CONFLICT (id) DO UPDATE"
                f" SET {APP_UPDATE}",
                _app_row(app),
            )
            _bump(conn, "apps_version")

        await self._write(fn)

    async def get_app(self, app_id: str) -> App | None:
        rows = await self._read(f"SELECT {APP_COLS} FROM apps WHERE id = ?", (app_id,))
        return _app(rows[0]) if rows else None

    async def find_app(self, id_or_name: str) -> App | None:
        rows = await self._read(
            f"SELECT {APP_COLS} FROM apps WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (id_or_name, id_or_name, id_or_name),
        )
        return _app(rows[0]) if rows else None

    async def list_apps(self) -> list[App]:
        return [_app(r) for r in await self._read(f"SELECT {APP_COLS} FROM apps ORDER BY id")]

    async def delete_app(self, app_id: str) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            found = conn.execute("DELETE FROM apps WHERE id = ?", (app_id,)).rowcount > 0
            if found:
                _bump(conn, "apps_version")
            return found

        return bool(await self._write(fn))

    async def apps_version(self) -> int:
        rows = await self._read("SELECT value FROM meta WHERE key = 'apps_version'")
        return int(rows[0][0])

    # events
    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease_until: float | None = None
    ) -> Accepted:
        # The loop saved at open(): get_running_loop() costs a getpid() system call.
        future: asyncio.Future[Accepted] = self._running_loop().create_future()
        result: Accepted = await self._submit(_EventOp(event, deliveries, lease_until, future))
        return result

    async def find_idempotent(self, app_id: str, key: str, since: float) -> str | None:
        rows = await self._read(
            "SELECT id FROM events WHERE app_id = ? AND idem_key = ? AND received_at >= ?",
            (app_id, key, since),
        )
        return rows[0][0] if rows else None

    async def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        if not event_ids:
            return []
        rows = await self._read(
            f"SELECT {EVENT_COLS} FROM events WHERE id IN (SELECT value FROM json_each(?))",
            (_json(list(dict.fromkeys(event_ids))),),
        )
        return [_event(r) for r in rows]

    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._read(f"SELECT {EVENT_COLS} FROM events WHERE id = ?", (event_id,))
        return _event(rows[0]) if rows else None

    async def list_events(
        self,
        *,
        app_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Event]:
        where, params = _where(
            ("app_id = ?", app_id),
            ("event_type = ?", event_type),
            ("received_at >= ?", since),
            ("id < ?", cursor),
        )
        rows = await self._read(
            f"SELECT {EVENT_COLS} FROM events {where} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1),
        )
        events = [_event(r) for r in rows[:limit]]
        return Page(events, events[-1].id if len(rows) > limit else None)

    async def count_events(self) -> int:
        return int((await self._read("SELECT count(*) FROM events"))[0][0])

    # webhook targets
    async def create_target(self, target: WebhookTarget) -> None:
        await self.save_target(target)

    async def save_target(self, target: WebhookTarget) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"REPLACE INTO targets ({TARGET_COLS}) VALUES ({_marks(12)})", _target_row(target)
            )
            _bump(conn, "targets_version")

        await self._write(fn)

    async def get_target(self, target_id: str) -> WebhookTarget | None:
        rows = await self._read(f"SELECT {TARGET_COLS} FROM targets WHERE id = ?", (target_id,))
        return _target(rows[0]) if rows else None

    async def list_targets(self) -> list[WebhookTarget]:
        rows = await self._read(f"SELECT {TARGET_COLS} FROM targets ORDER BY id")
        return [_target(r) for r in rows]

    async def delete_target(self, target_id: str) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            found = conn.execute("DELETE FROM targets WHERE id = ?", (target_id,)).rowcount > 0
            if found:
                _bump(conn, "targets_version")
            return found

        return bool(await self._write(fn))

    async def targets_version(self) -> int:
        rows = await self._read("SELECT value FROM meta WHERE key = 'targets_version'")
        return int(rows[0][0])

    async def record_target_outcome(
        self, target_id: str, ok: bool, disable_after: int | None, gone: bool = False
    ) -> WebhookTarget | None:
        def fn(conn: sqlite3.Connection) -> WebhookTarget | None:
            row = conn.execute(
                f"SELECT {TARGET_COLS} FROM targets WHERE id = ?", (target_id,)
            ).fetchone()
            if row is None:
                return None
            target = _target(row)
            failures = 0 if ok else target.consecutive_failures + 1
            status = target.status
            if gone or (not ok and disable_after is not None and failures >= disable_after):
                status = "disabled"
            conn.execute(
                "UPDATE targets SET consecutive_failures = ?, status = ? WHERE id = ?",
                (failures, status, target_id),
            )
            if status != target.status:
                _bump(conn, "targets_version")
            row = conn.execute(
                f"SELECT {TARGET_COLS} FROM targets WHERE id = ?", (target_id,)
            ).fetchone()
            return _target(row)

        result: WebhookTarget | None = await self._write(fn)
        return result

    # deliveries
    async def add_deliveries(
        self, deliveries: Sequence[Delivery], lease_until: float | None = None
    ) -> None:
        await self._write(
            lambda conn: _insert_deliveries(conn, [(d, lease_until) for d in deliveries])
        )

    async def has_due(self, now: float) -> bool:
        rows = await self._read(
            "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND (leased_until IS NULL OR leased_until <= ?) LIMIT 1",
            (now, now),
        )
        return bool(rows)

    async def claim_due(self, now: float, limit: int, lease_until: float) -> list[Delivery]:
        # Three statements that each return one row (ids and records as JSON arrays), not an
        # UPDATE ... RETURNING whose every row costs the writer thread a GIL round trip.
        def fn(conn: sqlite3.Connection) -> list[Delivery]:
            ids = conn.execute(
                "SELECT json_group_array(id) FROM (SELECT id FROM deliveries"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " AND (leased_until IS NULL OR leased_until <= ?)"
                " ORDER BY next_attempt_at LIMIT ?)",
                (now, now, limit),
            ).fetchone()[0]
            if ids == "[]":
                return []
            conn.execute(
                "UPDATE deliveries SET leased_until = ?"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (lease_until, ids),
            )
            rows = conn.execute(
                f"SELECT json_group_array(json_array({DELIVERY_JSON_COLS})) FROM deliveries"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (ids,),
            ).fetchone()[0]
            return [_delivery_from_json(r) for r in orjson.loads(rows)]

        result: list[Delivery] = await self._write(fn)
        return result

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
    ) -> None:
        row = (
            delivery_id,
            status,
            next_attempt_at,
            attempt.at,
            attempt.status_code,
            attempt.latency_ms,
            attempt.error,
            attempt.response_excerpt,
            attempt.retry_after,
        )
        await self._submit(_FinishOp(row, self._running_loop().create_future()))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = await self._read(
            f"SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?", (delivery_id,)
        )
        if not rows:
            return None
        attempts = await self._read(
            "SELECT at, status_code, latency_ms, error, response_excerpt, retry_after"
            " FROM attempts WHERE delivery_id = ? ORDER BY n",
            (delivery_id,),
        )
        return _delivery(rows[0], tuple(_attempt(a) for a in attempts))

    async def list_deliveries(
        self, flt: DeliveryFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]:
        where, params = _where(
            ("status = ?", flt.status),
            ("target_id = ?", flt.target_id),
            ("rule_id = ?", flt.rule_id),
            ("event_id = ?", flt.event_id),
            ("created_at >= ?", flt.since),
            ("id < ?", cursor),
        )
        rows = await self._read(
            f"SELECT {DELIVERY_COLS} FROM deliveries {where} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1),
        )
        page = [_delivery(r) for r in rows[:limit]]
        return Page(page, page[-1].id if len(rows) > limit else None)

    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        rows = await self._read(
            f"SELECT {DELIVERY_COLS} FROM deliveries WHERE event_id = ? ORDER BY id", (event_id,)
        )
        return [_delivery(r) for r in rows]

    async def requeue(self, delivery_ids: Sequence[str], now: float) -> int:
        ids = list(delivery_ids)

        def fn(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?,"
                " leased_until = NULL WHERE id = ?",
                [(now, i) for i in ids],
            )
            return cur.rowcount

        return int(await self._write(fn))

    async def release(self, delivery_ids: Sequence[str]) -> None:
        rows = [(i,) for i in delivery_ids]

        def fn(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE deliveries SET leased_until = NULL WHERE id = ? AND status = 'pending'",
                rows,
            )

        await self._write(fn)

    async def failed_since(self, since: float, target_id: str | None = None) -> list[str]:
        where, params = _where(
            ("status = ?", "failed"), ("created_at >= ?", since), ("target_id = ?", target_id)
        )
        rows = await self._read(f"SELECT id FROM deliveries {where} ORDER BY id", params)
        return [r[0] for r in rows]

    async def count_pending(self) -> int:
        rows = await self._read("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        return int(rows[0][0])

    async def prune(self, events_before: float, idempotency_before: float) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            conn.execute(
                "UPDATE events SET idem_key = NULL WHERE idem_key IS NOT NULL AND received_at < ?",
                (idempotency_before,),
            )
            old = "SELECT id FROM events WHERE received_at < ?"
            conn.execute(
                "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries"
                f" WHERE status != 'pending' AND event_id IN ({old}))",
                (events_before,),
            )
            conn.execute(
                f"DELETE FROM deliveries WHERE status != 'pending' AND event_id IN ({old})",
                (events_before,),
            )
            return conn.execute(
                "DELETE FROM events WHERE received_at < ?", (events_before,)
            ).rowcount

        return int(await self._write(fn))


def _apply_event_ops(
    conn: sqlite3.Connection, ops: list[_EventOp], ttl: float
) -> dict[int, tuple[bool, Any]]:
    """All events in one go (the fast path); if that fails, each alone, so that only the
    bad one fails. Keyed by `id(op)`."""
    ok, value = _savepoint(conn, partial(_apply_events, ops=ops, ttl=ttl))
    if ok:
        return {id(op): (True, accepted) for op, accepted in zip(ops, value, strict=True)}
    outcomes: dict[int, tuple[bool, Any]] = {}
    for op in ops:
        ok, value = _savepoint(conn, partial(_apply_events, ops=[op], ttl=ttl))
        outcomes[id(op)] = (True, value[0]) if ok else (False, value)
    return outcomes


def _apply_events(
    conn: sqlite3.Connection, ops: list[_EventOp], ttl: float = 86_400.0
) -> list[Accepted]:
    """Insert events and their deliveries; a repeated idempotency key inserts nothing and
    answers the original id, unless the original is older than `ttl` (its key expired and
    is handed to the new event, even before the pruner has cleared it)."""
    accepted: dict[int, Accepted] = {}
    plain = [op for op in ops if op.event.idempotency_key is None]
    _insert_rows(conn, INSERT_EVENT_HEAD, 8, [op.event_row for op in plain])
    inserted = list(plain)
    for op in ops:
        if op.event.idempotency_key is None:
            accepted[id(op)] = Accepted(op.event.id)
            continue
        cur = conn.execute(INSERT_EVENT_KEYED, op.event_row)
        if cur.rowcount == 1:
            accepted[id(op)] = Accepted(op.event.id)
            inserted.append(op)
            continue
        row = conn.execute(
            "SELECT id, received_at FROM events WHERE app_id = ? AND idem_key = ?",
            (op.event.app_id, op.event.idempotency_key),
        ).fetchone()
        if row is not None and row[1] < op.event.received_at - ttl:
            conn.execute("UPDATE events SET idem_key = NULL WHERE id = ?", (row[0],))
            conn.execute(INSERT_EVENT, op.event_row)
            accepted[id(op)] = Accepted(op.event.id)
            inserted.append(op)
            continue
        accepted[id(op)] = Accepted(row[0] if row else op.event.id, duplicate=True)
    delivery_rows = [row for op in inserted for row in op.delivery_rows]
    if delivery_rows:
        _insert_rows(conn, INSERT_DELIVERY_HEAD, 17, delivery_rows)
        attempt_rows = [row for op in inserted for row in op.attempt_rows]
        if attempt_rows:
            conn.executemany(INSERT_ATTEMPT, attempt_rows)
    return [accepted[id(op)] for op in ops]


def _apply_finishes(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Record attempts and move their deliveries on, two statements for the whole batch."""
    if len({row[0] for row in rows}) != len(rows):
        raise ValueError("one delivery finished twice in a batch")  # careful path: in order
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
    params = list(itertools.chain(*rows))
    conn.execute(
        "UPDATE deliveries SET status = v.column2, next_attempt_at = v.column3,"
        " leased_until = NULL, attempt_count = attempt_count + 1"
        f" FROM (VALUES {values}) AS v WHERE deliveries.id = v.column1",
        params,
    )
    conn.execute(
        "INSERT OR REPLACE INTO attempts SELECT v.column1, d.attempt_count, v.column4,"
        " v.column5, v.column6, v.column7, v.column8, v.column9"
        f" FROM (VALUES {values}) AS v JOIN deliveries AS d ON d.id = v.column1",
        params,
    )


def _savepoint(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
) -> tuple[bool, Any]:
    """Run `fn` inside a savepoint: (True, result), or (False, StoreError) rolled back."""
    conn.execute("SAVEPOINT op")
    try:
        value = fn(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return False, _store_error(exc)
    conn.execute("RELEASE op")
    return True, value


@functools.cache
def _values_sql(head: str, columns: int, rows: int) -> str:
    row = "(" + ", ".join("?" * columns) + ")"
    return head + ", ".join([row] * rows)


def _insert_rows(
    conn: sqlite3.Connection, head: str, columns: int, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert rows with one multi-row INSERT per chunk (one statement, not one per row)."""
    per_statement = MAX_VARIABLES // columns
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        conn.execute(_values_sql(head, columns, len(chunk)), list(itertools.chain(*chunk)))


def _attempt_rows(deliveries: Sequence[Delivery]) -> list[tuple[Any, ...]]:
    """Attempts that come with new deliveries (a template that failed at ingest)."""
    return [
        (d.id, n, a.at, a.status_code, a.latency_ms, a.error, a.response_excerpt, a.retry_after)
        for d in deliveries
        for n, a in enumerate(d.attempts, start=1)
    ]


def _insert_deliveries(
    conn: sqlite3.Connection, leased: Sequence[tuple[Delivery, float | None]]
) -> None:
    _insert_rows(conn, INSERT_DELIVERY_HEAD, 17, [_delivery_row(d, lease) for d, lease in leased])
    attempts = _attempt_rows([d for d, _ in leased])
    if attempts:
        conn.executemany(INSERT_ATTEMPT, attempts)


def _resolve(ops: list[_Op], results: list[tuple[bool, Any]] | BaseException) -> None:
    """Event loop: hand each op of a committed (or failed) batch its outcome."""
    if isinstance(results, BaseException):
        error = StoreError(f"SQLite write failed: {results}")
        error.__cause__ = results
        for op in ops:
            if not op.future.done():
                op.future.set_exception(error)
        return
    for op, (ok, value) in zip(ops, results, strict=True):
        if op.future.done():
            continue
        if ok:
            op.future.set_result(value)
        else:
            op.future.set_exception(value)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _bump(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = ?", (key,))


def _where(*clauses: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
    used = [(sql, value) for sql, value in clauses if value is not None]
    if not used:
        return "", ()
    return "WHERE " + " AND ".join(sql for sql, _ in used), tuple(v for _, v in used)


def _store_error(exc: Exception) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError) and "apps.name" in str(exc):
        error = StoreError("an app with that name already exists")
    else:
        error = StoreError(f"SQLite write failed: {exc}")
    error.__cause__ = exc
    return error
