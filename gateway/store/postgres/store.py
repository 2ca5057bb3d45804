"""PostgreSQL store (asyncpg): one database shared by several gateways and workers.

Ingest is group-committed: `add_event` queues its event and deliveries and a committer
applies whatever is queued in one transaction (one WAL flush for the batch, not one per
event), answering each request only after that commit, so a 2xx never names an event a
crash could lose. Finished attempts (`finish_attempt`) ride in the same batches: one
fenced UPDATE for all of them. A batch without idempotency keys is one statement
(`commit_batch`), so one round trip: the commit waits on the WAL flush, not on the wire.
Its rows travel as three arrays of composite values, one per table (`event_row`,
`delivery_row`, `finish_row`: migration 0006 has the measurements), not one per column.
Two committers run at once, so one batch fills while the other commits. If a batch fails
it is applied again request by request, so a bad write fails only its caller.

Events live in day partitions (`sql/migrations`): `prune` drops every partition
wholly older than the cutoff, deleting rows only in the one day the cutoff falls inside.
Due deliveries are claimed with `FOR UPDATE SKIP LOCKED`; every outcome, renewal and
release checks the row's lease token in the same statement that writes it (the fence of
`store/base.py`). Schema changes are numbered migrations applied at `open`
(`postgres_schema.py`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import asyncpg

from actions.model import Attempt, Delivery, DeliveryStatus, Lease
from gateway.errors import StoreError
from gateway.models import App, Event, TargetStatus, WebhookTarget, next_probe_interval
from gateway.store import sql_filters, sql_rows
from gateway.store.base import Accepted, DeliveryFilter, Page
from gateway.store.postgres import rows, schema

P = ParamSpec("P")
R = TypeVar("R")

DAY = 86_400.0
PARTITIONS_AHEAD = 3  # days of event partitions created beyond today, at open and prune
COMMITTERS = 2  # group-commit transactions in flight at once
POOL_SIZE = 8
# Every statement is planned for its own parameters. asyncpg prepares each statement once
# per connection, and after five runs PostgreSQL keeps a generic plan costed on the tables
# as they were then; nothing replans it until an ANALYZE (never, with autovacuum off). A
# `commit_batch` planned while `deliveries` was empty walked every pending delivery per
# group commit once a backlog built up: ingest fell from 1 310 req/s to 0 in one process
# within 10 s (`python -m bench --only postgres`, 2-core EPYC). A custom plan also sees
# the length of each unnest() array, so it looks the finished rows up by primary key.
SESSION_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
Q = schema.queries()
APP_COLS, EVENT_COLS = rows.APP_COLS, rows.EVENT_COLS
DELIVERY_COLS, TARGET_COLS = rows.DELIVERY_COLS, sql_rows.TARGET_COLS


def _translated(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Database and connection errors leave the store as `StoreError`."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    return wrapper


@dataclass(slots=True)
class _Ingest:
    """One queued `add_event`, answered by the commit that holds it."""

    event: Event
    deliveries: Sequence[Delivery]
    lease: Lease | None
    done: asyncio.Future[Accepted]


@dataclass(slots=True)
class _Finish:
    """One queued `finish_attempt`: committed with the next batch of events."""

    delivery_id: str
    attempt: str  # the attempt as JSON
    status: str
    next_attempt_at: float | None
    token: str
    done: asyncio.Future[bool]


def day_start(at: float) -> float:
    return (at // DAY) * DAY


class PostgresStore:
    """`Store` on PostgreSQL; see the module docstring for the write path and retention."""

    def __init__(
        self, url: str, *, schema_name: str | None = None, idempotency_ttl: float = 86_400.0
    ) -> None:
        self._url = url
        self._schema = schema_name
        self._ttl = idempotency_ttl
        self._pool: asyncpg.Pool | None = None
        self._queue: list[_Ingest | _Finish] = []
        self._committers: set[asyncio.Task[None]] = set()
        self._days: set[float] = set()  # day partitions known to exist
        self.transactions = 0  # group commits so far (tests check the grouping)
        self.committed = 0  # events answered by them

    # lifecycle
    async def open(self) -> None:
        settings = dict(SESSION_SETTINGS)
        if self._schema is not None:
            settings["search_path"] = self._schema
        try:
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=POOL_SIZE,
                server_settings=settings,
                reset=_keep_session,
            )
        except (asyncpg.PostgresError, OSError) as exc:
            raise StoreError(f"cannot reach PostgreSQL at {_safe(self._url)}: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                await schema.migrate(conn)
                await self._ensure_partitions(
                    conn, [time.time() + n * DAY for n in range(-1, PARTITIONS_AHEAD + 1)]
                )
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, asyncpg.PostgresError):
                raise StoreError(f"PostgreSQL migration failed: {exc}") from exc
            raise
        self._pool = pool

    async def close(self) -> None:
        while self._committers:
            await asyncio.gather(*self._committers, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    @_translated
    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def _ensure_partitions(self, conn: asyncpg.Connection, times: Collection[float]) -> None:
        for day in sorted({day_start(t) for t in times} - self._days):
            await conn.execute("SELECT hookgate_event_partition($1)", day)
            self._days.add(day)

    async def _bump(self, conn: asyncpg.Connection, key: str) -> None:
        await conn.execute("UPDATE meta SET value = value + 1 WHERE key = $1", key)

    # apps
    @_translated
    async def create_app(self, app: App) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    f"INSERT INTO apps ({APP_COLS}) VALUES ({_marks(13)})", *rows.app_row(app)
                )
            except asyncpg.UniqueViolationError as exc:
                raise StoreError(_clash(exc, app)) from exc
            await self._bump(conn, "apps_version")

    @_translated
    async def save_app(self, app: App) -> None:
        update = ", ".join(f"{c} = excluded.{c}" for c in APP_COLS.split(", ")[1:])
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    f"INSERT INTO apps ({APP_COLS}) VALUES ({_marks(13)})"
                    f" ON CONFLICT (id) DO UPDATE SET {update}",
                    *rows.app_row(app),
                )
            except asyncpg.UniqueViolationError as exc:
                raise StoreError(_clash(exc, app)) from exc
            await self._bump(conn, "apps_version")

    @_translated
    async def get_app(self, app_id: str) -> App | None:
        row = await self.pool.fetchrow(f"SELECT {APP_COLS} FROM apps WHERE id = $1", app_id)
        return None if row is None else rows.app(row)

    @_translated
    async def find_app(self, id_or_name: str) -> App | None:
        row = await self.pool.fetchrow(
            f"SELECT {APP_COLS} FROM apps WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1",
            id_or_name,
        )
        return None if row is None else rows.app(row)

    @_translated
    async def list_apps(self) -> list[App]:
        return [
            rows.app(r) for r in await self.pool.fetch(f"SELECT {APP_COLS} FROM apps ORDER BY id")
        ]

    @_translated
    async def delete_app(self, app_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            found = bool(await conn.execute("DELETE FROM apps WHERE id = $1", app_id) != "DELETE 0")
            if found:
                await self._bump(conn, "apps_version")
            return found

    @_translated
    async def apps_version(self) -> int:
        return int(await self.pool.fetchval("SELECT value FROM meta WHERE key = 'apps_version'"))

    # events: the group-committed write path
    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> Accepted:
        done: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._enqueue(_Ingest(event, deliveries, lease, done))
        return await done

    def _enqueue(self, op: _Ingest | _Finish) -> None:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        self._queue.append(op)
        if len(self._committers) < COMMITTERS:
            task = asyncio.create_task(self._commit_queued())
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)

    async def _commit_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._commit(batch)
            except Exception:
                for op in batch:  # again one by one: a bad write fails only its caller
                    try:
                        await self._commit([op])
                    except Exception as exc:
                        self._days.clear()  # a partition may have been dropped meanwhile
                        if not op.done.done():
                            op.done.set_exception(_store_error(exc))

    async def _commit(self, batch: list[_Ingest | _Finish]) -> None:
        """One transaction for the batch: its events first (idempotency keys in sorted
        order), then its finished attempts (deliveries in id order), so two concurrent
        batches take their row locks in one order and never deadlock."""
        events = [op for op in batch if isinstance(op, _Ingest)]
        finishes = sorted(
            (op for op in batch if isinstance(op, _Finish)), key=lambda op: op.delivery_id
        )
        async with self.pool.acquire() as conn:
            await self._ensure_partitions(conn, [op.event.received_at for op in events])
            if _one_statement(events, finishes):
                recorded = await self._commit_one_statement(conn, events, finishes)
                accepted = [Accepted(op.event.id) for op in events]
            else:
                async with conn.transaction():
                    accepted = await self._insert_events(conn, events) if events else []
                    recorded = await self._finish_attempts(conn, finishes) if finishes else []
        self.transactions += 1
        self.committed += len(events)
        answers: list[tuple[asyncio.Future[Any], Any]] = [
            *zip((op.done for op in events), accepted, strict=True),
            *zip((op.done for op in finishes), recorded, strict=True),
        ]
        for done, answer in answers:
            if not done.done():
                done.set_result(answer)

    async def _commit_one_statement(
        self, conn: asyncpg.Connection, events: list[_Ingest], finishes: list[_Finish]
    ) -> list[bool]:
        """The common batch (no idempotency key to take, no attempt to copy, no delivery
        finished twice) as `commit_batch`: one round trip where the transaction of
        `_insert_events` and `_finish_attempts` takes five (BEGIN, three statements, COMMIT)."""
        found = await conn.fetch(
            Q["commit_batch"],
            rows.event_rows([op.event for op in events]),
            rows.delivery_rows(
                [d for op in events for d in op.deliveries],
                [op.lease for op in events for _ in op.deliveries],
            ),
            _finish_rows(finishes),
        )
        done = {r[0] for r in found}
        return [op.delivery_id in done for op in finishes]

    async def _finish_attempts(
        self, conn: asyncpg.Connection, finishes: list[_Finish]
    ) -> list[bool]:
        """Record the attempts of rows still held under their token: one UPDATE for the
        batch (one per row when one delivery is finished twice in it, in order)."""
        if len({op.delivery_id for op in finishes}) != len(finishes):
            outcomes = [
                await conn.execute(
                    Q["finish_attempt"],
                    op.delivery_id,
                    op.attempt,
                    op.status,
                    op.next_attempt_at,
                    op.token,
                )
                for op in finishes
            ]
            return [outcome == "UPDATE 1" for outcome in outcomes]
        found = await conn.fetch(Q["finish_attempts"], _finish_rows(finishes))
        done = {r[0] for r in found}
        return [op.delivery_id in done for op in finishes]

    async def _insert_events(
        self, conn: asyncpg.Connection, batch: list[_Ingest]
    ) -> list[Accepted]:
        answers: dict[int, Accepted] = {}
        kept = [op for op in batch if op.event.idempotency_key is None]
        # Keys in one order in every transaction: two batches never wait on each other's keys
        # in opposite orders (no deadlock).
        keyed = sorted(
            (op for op in batch if op.event.idempotency_key is not None),
            key=lambda op: (op.event.app_id, op.event.idempotency_key or ""),
        )
        for op in keyed:
            e = op.event
            taken = await conn.fetchval(
                Q["take_idempotency_key"],
                e.app_id,
                e.idempotency_key,
                e.id,
                e.received_at,
                self._ttl,
            )
            if taken is not None:
                kept.append(op)
            else:
                owner = await conn.fetchval(Q["idempotency_owner"], e.app_id, e.idempotency_key)
                answers[id(op)] = Accepted(owner, duplicate=True)
        if kept:
            await conn.execute(Q["insert_events"], rows.event_rows([op.event for op in kept]))
            # every event's deliveries in one statement, each row under its event's lease
            await self._insert_deliveries(
                conn,
                [d for op in kept for d in op.deliveries],
                [op.lease for op in kept for _ in op.deliveries],
            )
        for op in kept:
            answers[id(op)] = Accepted(op.event.id)
        return [answers[id(op)] for op in batch]

    async def _insert_deliveries(
        self,
        conn: asyncpg.Connection,
        deliveries: Sequence[Delivery],
        leases: Sequence[Lease | None],
    ) -> None:
        """Insert `deliveries`, each held under the lease beside it (if any)."""
        if not deliveries:
            return
        await conn.execute(Q["insert_deliveries"], rows.delivery_rows(deliveries, leases))
        with_attempts = [d for d in deliveries if d.attempts]
        if with_attempts:
            await conn.executemany(
                Q["set_attempts"],
                [(d.id, [rows.attempt_data(a) for a in d.attempts]) for d in with_attempts],
            )

    # events: reads
    @_translated
    async def find_idempotent(self, app_id: str, key: str, since: float) -> str | None:
        found: str | None = await self.pool.fetchval(
            "SELECT event_id FROM idempotency_keys"
            " WHERE app_id = $1 AND idem_key = $2 AND received_at >= $3",
            app_id,
            key,
            since,
        )
        return found

    @_translated
    async def get_event(self, event_id: str) -> Event | None:
        row = await self.pool.fetchrow(f"SELECT {EVENT_COLS} FROM events WHERE id = $1", event_id)
        return None if row is None else sql_rows.event(row)

    @_translated
    async def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        if not event_ids:
            return []
        found = await self.pool.fetch(
            f"SELECT {EVENT_COLS} FROM events WHERE id = ANY ($1::text[])",
            list(dict.fromkeys(event_ids)),
        )
        return [sql_rows.event(r) for r in found]

    @_translated
    async def list_events(
        self,
        *,
        app_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Event]:
        where, params = _where(sql_filters.events(app_id, event_type, since, cursor))
        found = await self.pool.fetch(
            f"SELECT {EVENT_COLS} FROM events {where} ORDER BY id DESC LIMIT {limit + 1}", *params
        )
        events = [sql_rows.event(r) for r in found[:limit]]
        return Page(events, events[-1].id if len(found) > limit else None)

    @_translated
    async def count_events(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM events"))

    # webhook targets
    async def create_target(self, target: WebhookTarget) -> None:
        await self.save_target(target)

    @_translated
    async def save_target(self, target: WebhookTarget) -> None:
        update = ", ".join(f"{c} = excluded.{c}" for c in TARGET_COLS.split(", ")[1:])
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO targets ({TARGET_COLS}) VALUES ({_marks(sql_rows.TARGET_MARKS)})"
                f" ON CONFLICT (id) DO UPDATE SET {update}",
                *sql_rows.target_row(target),
            )
            await self._bump(conn, "targets_version")

    @_translated
    async def get_target(self, target_id: str) -> WebhookTarget | None:
        row = await self.pool.fetchrow(
            f"SELECT {TARGET_COLS} FROM targets WHERE id = $1", target_id
        )
        return None if row is None else sql_rows.target(row)

    @_translated
    async def list_targets(self) -> list[WebhookTarget]:
        found = await self.pool.fetch(f"SELECT {TARGET_COLS} FROM targets ORDER BY id")
        return [sql_rows.target(r) for r in found]

    @_translated
    async def delete_target(self, target_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.execute("DELETE FROM targets WHERE id = $1", target_id) != "DELETE 0"
            if found:
                await self._bump(conn, "targets_version")
                await conn.execute(Q["unhold"], target_id, "skipped", None)
            return bool(found)

    @_translated
    async def targets_version(self) -> int:
        return int(await self.pool.fetchval("SELECT value FROM meta WHERE key = 'targets_version'"))

    @_translated
    async def record_target_outcome(
        self,
        target_id: str,
        ok: bool,
        disable_after: int | None,
        gone: bool = False,
        *,
        now: float | None = None,
    ) -> WebhookTarget | None:
        now = time.time() if now is None else now
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT consecutive_failures, status, probe_interval, probe_delivery_id"
                " FROM targets WHERE id = $1 FOR UPDATE",
                target_id,
            )
            if row is None:
                return None
            failures, status, interval, probe = row
            if status == "disabled":
                if interval is None:  # disabled by hand: outcomes change nothing
                    pass
                elif ok:
                    await self._enable(conn, target_id, now)
                elif probe is not None:
                    interval = next_probe_interval(interval)
                    await conn.execute(
                        "UPDATE targets SET consecutive_failures = consecutive_failures + 1,"
                        " probe_interval = $2, next_probe_at = $3, probe_delivery_id = NULL"
                        " WHERE id = $1",
                        target_id,
                        interval,
                        now + interval,
                    )
                    await self._bump(conn, "targets_version")
                return await self._target_in(conn, target_id)
            failures = 0 if ok else failures + 1
            await conn.execute(
                "UPDATE targets SET consecutive_failures = $2 WHERE id = $1", target_id, failures
            )
            if gone or (not ok and disable_after is not None and failures >= disable_after):
                await self._disable(conn, target_id, now, probe=True)
            return await self._target_in(conn, target_id)

    @_translated
    async def set_target_status(
        self, target_id: str, status: TargetStatus, now: float
    ) -> WebhookTarget | None:
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval("SELECT 1 FROM targets WHERE id = $1 FOR UPDATE", target_id)
            if found is None:
                return None
            if status == "active":
                await self._enable(conn, target_id, now)
            else:
                await self._disable(conn, target_id, now, probe=False)
            return await self._target_in(conn, target_id)

    async def _target_in(self, conn: asyncpg.Connection, target_id: str) -> WebhookTarget:
        row = await conn.fetchrow(f"SELECT {TARGET_COLS} FROM targets WHERE id = $1", target_id)
        return sql_rows.target(row)

    async def _disable(
        self, conn: asyncpg.Connection, target_id: str, now: float, *, probe: bool
    ) -> None:
        """Disable the (locked) target and hold its pending unleased deliveries; `probe`:
        disabled after failures, so its first probe is due `reenable_after` from now."""
        await conn.execute(
            "UPDATE targets SET disabled_at = CASE WHEN status = 'disabled' THEN disabled_at"
            " ELSE $2 END, status = 'disabled', probe_delivery_id = NULL,"
            " probe_interval = CASE WHEN $3 THEN reenable_after END,"
            " next_probe_at = CASE WHEN $3 THEN $2 + reenable_after END WHERE id = $1",
            target_id,
            now,
            probe,
        )
        await self._bump(conn, "targets_version")
        await conn.execute(Q["hold_pending"], target_id, now)

    async def _enable(self, conn: asyncpg.Connection, target_id: str, now: float) -> None:
        await conn.execute(
            "UPDATE targets SET status = 'active', consecutive_failures = 0, disabled_at = NULL,"
            " next_probe_at = NULL, probe_interval = NULL, probe_delivery_id = NULL"
            " WHERE id = $1",
            target_id,
        )
        await self._bump(conn, "targets_version")
        await conn.execute(Q["unhold"], target_id, "pending", now)

    @_translated
    async def probe_targets(self, now: float) -> list[str]:
        made: list[str] = []
        # A read first: the step runs every poll, and most of the time nothing is held.
        if not await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status = 'held')"
        ):
            return made
        async with self.pool.acquire() as conn, conn.transaction():
            # Targets locked in id order, one at a time: the same order every gateway's
            # step takes, and an outcome locks one target only, so no deadlock.
            for (target_id,) in await conn.fetch(Q["held_targets"]):
                row = await conn.fetchrow(
                    "SELECT status, probe_interval, next_probe_at, probe_delivery_id"
                    " FROM targets WHERE id = $1 FOR UPDATE",
                    target_id,
                )
                if row is None:  # deleted while a view still planned held deliveries
                    await conn.execute(Q["unhold"], target_id, "skipped", None)
                    continue
                status, interval, next_probe_at, probe = row
                if status == "active":
                    released = await conn.fetch(Q["unhold"], target_id, "pending", now)
                    made += sorted(r[0] for r in released)
                    continue
                if interval is None or next_probe_at is None or next_probe_at > now:
                    continue
                out = await conn.fetchval("SELECT status FROM deliveries WHERE id = $1", probe)
                if out == "pending":
                    continue  # the last probe is still out
                first = await conn.fetchval(Q["start_probe"], target_id, now)
                if first is None:
                    continue
                await conn.execute(
                    "UPDATE targets SET probe_delivery_id = $2, next_probe_at = $3 WHERE id = $1",
                    target_id,
                    first,
                    now + interval,
                )
                await self._bump(conn, "targets_version")
                made.append(first)
        return made

    # deliveries
    @_translated
    async def add_deliveries(
        self, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._insert_deliveries(conn, deliveries, [lease] * len(deliveries))

    @_translated
    async def has_due(self, now: float) -> bool:
        return bool(await self.pool.fetchval(Q["has_due"], now))

    @_translated
    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        if limit < 1:
            return []
        found = await self.pool.fetch(
            Q["claim_due"], now, limit, lease.until, lease.token, sorted(skip_hosts)
        )
        claimed = [rows.delivery(r) for r in found]
        claimed.sort(key=lambda d: (d.next_attempt_at or 0.0, d.id))
        return claimed

    @_translated
    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        if not held:
            return []
        renewed = {
            r[0]
            for r in await self.pool.fetch(Q["renew"], lease_until, list(held), list(held.values()))
        }
        return [i for i in held if i in renewed]

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
        # group-committed with ingest: one transaction per batch, not one per attempt
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        data = rows.attempt_data(attempt)
        self._enqueue(_Finish(delivery_id, data, status, next_attempt_at, lease_token, done))
        return await done

    @_translated
    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self.pool.fetchrow(
            f"SELECT {DELIVERY_COLS}, attempts FROM deliveries WHERE id = $1", delivery_id
        )
        return None if row is None else rows.delivery(row, row["attempts"])

    @_translated
    async def list_deliveries(
        self, flt: DeliveryFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]:
        where, params = _where(sql_filters.deliveries(flt, cursor))
        found = await self.pool.fetch(
            f"SELECT {DELIVERY_COLS} FROM deliveries {where} ORDER BY id DESC LIMIT {limit + 1}",
            *params,
        )
        page = [rows.delivery(r) for r in found[:limit]]
        return Page(page, page[-1].id if len(found) > limit else None)

    @_translated
    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        found = await self.pool.fetch(
            f"SELECT {DELIVERY_COLS} FROM deliveries WHERE event_id = $1 ORDER BY id", event_id
        )
        return [rows.delivery(r) for r in found]

    @_translated
    async def requeue(self, delivery_ids: Sequence[str], now: float) -> int:
        if not delivery_ids:
            return 0
        outcome = await self.pool.execute(Q["requeue"], list(delivery_ids), now)
        return int(outcome.split()[-1])

    @_translated
    async def cancel(self, delivery_ids: Sequence[str]) -> list[str]:
        if not delivery_ids:
            return []
        found = await self.pool.fetch(Q["cancel"], list(delivery_ids))
        return sorted(r[0] for r in found)

    @_translated
    async def release(self, held: Mapping[str, str]) -> None:
        if held:
            await self.pool.execute(Q["release"], list(held), list(held.values()))

    @_translated
    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        outcome = await self.pool.execute(Q["defer"], delivery_id, lease_token, until)
        return bool(outcome == "UPDATE 1")

    @_translated
    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        wait = await self.pool.fetchval(Q["take_delivery_slot"], key, now, 1.0 / rate, burst)
        return float(wait)

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        if not held:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            kept = {r[0] for r in await conn.fetch(Q["hold"], list(held), list(held.values()))}
            await conn.execute(Q["release"], list(held), list(held.values()))
        return [i for i in held if i in kept]

    @_translated
    async def failed_since(self, since: float, target_id: str | None = None) -> list[str]:
        where, params = _where(sql_filters.failed_since(since, target_id))
        found = await self.pool.fetch(f"SELECT id FROM deliveries {where} ORDER BY id", *params)
        return [r[0] for r in found]

    @_translated
    async def count_pending(self) -> int:
        return int(
            await self.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        )

    # retention
    @_translated
    async def prune(self, events_before: float, idempotency_before: float) -> int:
        """Drop every day partition wholly before `events_before` (with the finished
        deliveries of its events); delete rows only in the day the cutoff falls inside."""
        dropped = 0
        async with self.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE received_at < $1",
                max(idempotency_before, events_before),
            )
            for part in await conn.fetch(Q["event_partitions"]):
                name, lower = part["name"], part["lower"]
                if lower >= events_before:
                    break
                table = _ident(name)
                async with conn.transaction():
                    if lower + DAY <= events_before:
                        await conn.execute(
                            "DELETE FROM deliveries WHERE status NOT IN ('pending', 'held')"
                            f" AND event_id IN (SELECT id FROM {table})"
                        )
                        dropped += int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
                        await conn.execute(f"DROP TABLE {table}")
                        self._days.discard(lower)
                    else:
                        gone = await conn.fetch(
                            f"DELETE FROM {table} WHERE received_at < $1 RETURNING id",
                            events_before,
                        )
                        ids = [r[0] for r in gone]
                        await conn.execute(
                            "DELETE FROM deliveries WHERE status NOT IN ('pending', 'held')"
                            " AND event_id = ANY ($1::text[])",
                            ids,
                        )
                        dropped += len(ids)
            await self._ensure_partitions(
                conn, [time.time() + n * DAY for n in range(PARTITIONS_AHEAD + 1)]
            )
        return dropped


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query: that is one more
    round trip per acquire (per group commit, per read), and the store leaves nothing to
    reset (no LISTEN, no cursors, no SET, advisory locks only inside `migrate`, released
    there). asyncpg still rolls back an open transaction before calling this."""


def _one_statement(events: Sequence[_Ingest], finishes: Sequence[_Finish]) -> bool:
    """Whether `commit_batch` can apply the batch: it takes no idempotency key, copies no
    recorded attempts, and finishes each delivery once (it sees the rows as they were
    before the statement)."""
    return (
        all(op.event.idempotency_key is None for op in events)
        and all(not d.attempts for op in events for d in op.deliveries)
        and len({op.delivery_id for op in finishes}) == len(finishes)
    )


def _where(clauses: Sequence[sql_filters.Clause]) -> tuple[str, list[Any]]:
    return sql_filters.where(clauses, lambda n: f"${n}")


def _marks(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clash(exc: asyncpg.UniqueViolationError, app: App) -> str:
    if exc.constraint_name == "apps_pkey":
        return f"an app with id {app.id!r} already exists"
    if exc.constraint_name == "apps_name_key":
        return f"an app named {app.name!r} already exists"
    return "an app with that token already exists"


def _store_error(exc: Exception) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"PostgreSQL write failed: {exc}")


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}{sep}{user}@{host}"


async def run_migrations(url: str, schema_name: str | None = None) -> tuple[list[int], int]:
    """Apply the missing migrations and nothing else (`hookgate migrate`); answer the
    versions applied and the version the database is at now."""
    settings = {} if schema_name is None else {"search_path": schema_name}
    try:
        conn = await asyncpg.connect(url, server_settings=settings)
    except (asyncpg.PostgresError, OSError) as exc:
        raise StoreError(f"cannot reach PostgreSQL at {_safe(url)}: {exc}") from exc
    try:
        applied = await schema.migrate(conn)
        return applied, await schema.current_version(conn)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"PostgreSQL migration failed: {exc}") from exc
    finally:
        await conn.close()


def _finish_rows(finishes: list[_Finish]) -> list[tuple[Any, ...]]:
    """The finishes of a batch as `finish_row` values, as the fenced UPDATE takes them."""
    return [
        (op.delivery_id, op.attempt, op.status, op.next_attempt_at, op.token) for op in finishes
    ]
