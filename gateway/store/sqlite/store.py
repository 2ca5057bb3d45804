"""SQLite store (WAL): the embedded default.

Writes go to one writer process (`sqlite_writer.py`) over a pipe: it group-commits
whatever requests are waiting (one transaction, one fsync per batch, not per event) and
answers each only after the batch holding it commits, so a request is answered 202 only
once its event is durable. Keeping the writer out of this process matters for speed: the
binding, B-tree work and fsync of every commit then run on another core, under another
GIL, instead of contending with the HTTP event loop (measured: the writer thread's GIL
hand-offs cost more than the writes themselves).

The writer is supervised: if it dies (`kill -9`, OOM), writes fail with `StoreError` (the
API answers 503 `store_unavailable`, `ping` and so `/readyz` fail) only until it is
restarted, with a backoff from 0.5 s doubling to 30 s, reset after a healthy minute. What
it had committed is durable; what it had not was never answered as committed.

Reads use an aiosqlite connection in this process, which WAL lets run beside the writer.
Other processes (the CLI, with a
writer of its own) may open the same file: SQLite's locks and `busy_timeout` serialise
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from actions.ids import id_floor
from actions.model import Attempt, Delivery, DeliveryStatus, Lease
from gateway.delivery import pipe as wire
from gateway.delivery.restarts import RestartBackoff
from gateway.errors import StoreError
from gateway.limits.buckets import SlotBuckets
from gateway.models import PROBE_INTERVAL_MAX, App, Event, TargetStatus, WebhookTarget
from gateway.store import sql_filters, sql_rows
from gateway.store.base import Accepted, DeliveryFilter, Page
from gateway.store.sqlite import rows, writer

log = logging.getLogger("hookgate.store")

APP_COLS = writer.APP_COLS
EVENT_COLS = writer.EVENT_COLS
DELIVERY_COLS = writer.DELIVERY_COLS
TARGET_COLS = writer.TARGET_COLS
WRITER = Path(writer.__file__)
ANSWER_CHUNK = 1 << 16
PRUNE_CHUNK = 2000  # events per prune transaction


class SqliteStore:
    """`Store` on one SQLite file in WAL mode; see the module docstring for the write path."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        idempotency_ttl: float = 86_400.0,
        restart_backoff_max: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._restart_max = restart_backoff_max
        self._synchronous = synchronous
        self._idempotency_ttl = idempotency_ttl
        self._ro: aiosqlite.Connection | None = None
        self._writer: asyncio.subprocess.Process | None = None
        self._answers: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._out: wire.LineBuffer | None = None
        self._saved_loop: asyncio.AbstractEventLoop | None = None
        self._open = False
        self._slots = SlotBuckets()
        self._supervisor: asyncio.Task[None] | None = None
        self._writer_proc: asyncio.subprocess.Process | None = None

    # lifecycle
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._start_writer()
        try:
            self._ro = await aiosqlite.connect(self.path, isolation_level=None)
            await self._ro.execute("PRAGMA busy_timeout=10000")
            await self._ro.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._open = True
        self._supervisor = asyncio.create_task(self._supervise(), name="hookgate-sqlite-writer")

    async def _supervise(self) -> None:
        """Restart the writer whenever it exits while the store is open."""
        backoff = RestartBackoff(maximum=self._restart_max)
        started = time.monotonic()
        while self._open:
            answers = self._answers
            if answers is not None:
                await asyncio.shield(answers)
            if not self._open:
                return
            proc = self._writer_proc
            code = None if proc is None else await proc.wait()
            wait = backoff.after(time.monotonic() - started)
            log.warning(
                "the SQLite writer process exited with %s; restarting in %.1f s", code, wait
            )
            while self._open:
                await asyncio.sleep(wait)
                wait = backoff.after(0.0)
                try:
                    await self._start_writer()
                except (OSError, StoreError) as exc:
                    log.warning("restarting the SQLite writer failed: %s", exc)
                    continue
                started = time.monotonic()
                log.warning("the SQLite writer process is back")
                break

    async def _start_writer(self) -> None:
        # Run by path, not as a module: the writer imports only the standard library and
        # orjson, so it starts fast (the CLI and the tests open many stores).
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WRITER),
            str(self.path),
            self._synchronous,
            str(self._idempotency_ttl),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,
            # Its own session: a terminal's Ctrl-C reaches the server only, which stops the
            # writer by closing its stdin after the last commit (no KeyboardInterrupt here).
            start_new_session=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        ready = await proc.stdout.readline()
        if orjson.loads(ready or b"null") != [0, "ready"]:
            await proc.wait()
            raise StoreError(f"cannot open SQLite store at {self.path}: the writer did not start")
        self._writer = proc
        self._writer_proc = proc
        self._out = wire.LineBuffer(partial(_write_to, proc.stdin))
        self._answers = asyncio.create_task(self._read_answers(proc))

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        # A group commit answers many requests at once: read whatever has arrived and split
        # it here, rather than one readline (and one await) per answer.
        partial = b""
        while True:
            chunk = await proc.stdout.read(ANSWER_CHUNK)
            if not chunk:
                break
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                request_id, ok, result = orjson.loads(line)
                future = self._pending.pop(request_id, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(result)
                else:
                    future.set_exception(StoreError(result))
        # The writer is gone: nothing waiting on it can be committed any more.
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(StoreError("the SQLite writer process exited"))
        if self._writer is proc:
            self._writer = None
            self._out = None

    async def close(self) -> None:
        self._open = False
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        proc = self._writer
        if proc is not None:
            if self._out is not None:
                self._out.flush()
            if self._pending:
                await asyncio.gather(*self._pending.values(), return_exceptions=True)
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()
        if self._answers is not None:
            await self._answers
            self._answers = None
        if self._ro is not None:
            await self._ro.close()
        self._ro = None
        self._writer = None

    async def ping(self) -> None:
        if self._open and self._writer is None:
            raise StoreError("the SQLite writer process is not running")
        await self._read("SELECT 1")

    # the write path
    def _send(self, command: str, *args: Any) -> asyncio.Future[Any]:
        if not self._open:
            raise StoreError("the SQLite store is not open")
        if self._writer is None or self._out is None:
            raise StoreError("the SQLite writer process is not running (being restarted)")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[request_id] = future
        self._out.send([request_id, command, *args])
        return future

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        # Saved once: asyncio.get_running_loop() costs a getpid() system call.
        if self._saved_loop is None:
            self._saved_loop = asyncio.get_running_loop()
        return self._saved_loop

    async def writer_stats(self) -> tuple[int, int]:
        """(transactions, requests) the writer process has committed: requests per
        transaction is the group-commit factor."""
        transactions, requests = await self._send("stats")
        return transactions, requests

    async def _write(self, command: str, *args: Any) -> Any:
        return await self._send(command, *args)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._ro is None:
            raise StoreError("the SQLite store is not open")
        try:
            return list(await self._ro.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

    # apps
    async def create_app(self, app: App) -> None:
        await self._write("create_app", rows.app_row(app))

    async def save_app(self, app: App) -> None:
        await self._write("save_app", rows.app_row(app))

    async def get_app(self, app_id: str) -> App | None:
        found = await self._read(f"SELECT {APP_COLS} FROM apps WHERE id = ?", (app_id,))
        return rows.app(found[0]) if found else None

    async def find_app(self, id_or_name: str) -> App | None:
        found = await self._read(
            f"SELECT {APP_COLS} FROM apps WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (id_or_name, id_or_name, id_or_name),
        )
        return rows.app(found[0]) if found else None

    async def list_apps(self) -> list[App]:
        return [rows.app(r) for r in await self._read(f"SELECT {APP_COLS} FROM apps ORDER BY id")]

    async def delete_app(self, app_id: str) -> bool:
        return bool(await self._write("delete_app", app_id))

    async def apps_version(self) -> int:
        found = await self._read("SELECT value FROM meta WHERE key = 'apps_version'")
        return int(found[0][0])

    # events
    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> Accepted:
        event_id, duplicate = await self._send(
            "event",
            rows.event_row(event),
            [rows.delivery_row(d, lease) for d in deliveries],
            rows.attempt_rows(deliveries),
        )
        return Accepted(event_id, duplicate=duplicate)

    async def find_idempotent(self, app_id: str, key: str, since: float) -> str | None:
        found = await self._read(
            "SELECT id FROM events WHERE app_id = ? AND idem_key = ? AND received_at >= ?",
            (app_id, key, since),
        )
        return found[0][0] if found else None

    async def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        if not event_ids:
            return []
        found = await self._read(
            f"SELECT {EVENT_COLS} FROM events WHERE id IN (SELECT value FROM json_each(?))",
            (sql_rows.to_json(list(dict.fromkeys(event_ids))),),
        )
        return [sql_rows.event(r) for r in found]

    async def get_event(self, event_id: str) -> Event | None:
        found = await self._read(f"SELECT {EVENT_COLS} FROM events WHERE id = ?", (event_id,))
        return sql_rows.event(found[0]) if found else None

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
        found = await self._read(
            f"SELECT {EVENT_COLS} FROM events {where} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1),
        )
        events = [sql_rows.event(r) for r in found[:limit]]
        return Page(events, events[-1].id if len(found) > limit else None)

    async def count_events(self) -> int:
        return int((await self._read("SELECT count(*) FROM events"))[0][0])

    # webhook targets
    async def create_target(self, target: WebhookTarget) -> None:
        await self.save_target(target)

    async def save_target(self, target: WebhookTarget) -> None:
        await self._write("save_target", sql_rows.target_row(target))

    async def get_target(self, target_id: str) -> WebhookTarget | None:
        found = await self._read(f"SELECT {TARGET_COLS} FROM targets WHERE id = ?", (target_id,))
        return sql_rows.target(found[0]) if found else None

    async def list_targets(self) -> list[WebhookTarget]:
        found = await self._read(f"SELECT {TARGET_COLS} FROM targets ORDER BY id")
        return [sql_rows.target(r) for r in found]

    async def delete_target(self, target_id: str) -> bool:
        return bool(await self._write("delete_target", target_id))

    async def targets_version(self) -> int:
        found = await self._read("SELECT value FROM meta WHERE key = 'targets_version'")
        return int(found[0][0])

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
        row = await self._write(
            "target_outcome", target_id, ok, disable_after, gone, now, PROBE_INTERVAL_MAX
        )
        return None if row is None else sql_rows.target(row)

    async def set_target_status(
        self, target_id: str, status: TargetStatus, now: float
    ) -> WebhookTarget | None:
        row = await self._write("set_target_status", target_id, status, now)
        return None if row is None else sql_rows.target(row)

    async def probe_targets(self, now: float) -> list[str]:
        # A read first: the step runs every poll, and most of the time nothing is held.
        if not await self._read("SELECT 1 FROM deliveries WHERE status = 'held' LIMIT 1"):
            return []
        return list(await self._write("probe_targets", now))

    # deliveries
    async def add_deliveries(
        self, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> None:
        await self._write(
            "add_deliveries",
            [rows.delivery_row(d, lease) for d in deliveries],
            rows.attempt_rows(deliveries),
        )

    async def has_due(self, now: float) -> bool:
        found = await self._read(
            "SELECT 1 FROM deliveries AS d WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
            f" AND (d.leased_until IS NULL OR d.leased_until <= ?) AND {writer.HEAD_OF_KEY}"
            " LIMIT 1",
            (now, now),
        )
        return bool(found)

    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        claimed = await self._write(
            "claim", now, limit, lease.until, lease.token, sorted(skip_hosts)
        )
        return [rows.delivery_from_json(r) for r in orjson.loads(claimed)]

    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        if not held:
            return []
        return list(await self._write("renew", dict(held), lease_until))

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
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
            *rows.exchange(attempt),
            attempt.rate_slot_at,
            lease_token,
        )
        return bool(await self._send("finish", row))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        found = await self._read(
            f"SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?", (delivery_id,)
        )
        if not found:
            return None
        attempts = await self._read(
            "SELECT at, status_code, latency_ms, error, response_excerpt, retry_after,"
            " request, response_headers, rate_slot_at FROM attempts WHERE delivery_id = ?"
            " ORDER BY n",
            (delivery_id,),
        )
        return rows.delivery(found[0], tuple(rows.attempt(a) for a in attempts))

    async def list_deliveries(
        self, flt: DeliveryFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]:
        where, params = _where(sql_filters.deliveries(flt, cursor))
        found = await self._read(
            f"SELECT {DELIVERY_COLS} FROM deliveries {where} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1),
        )
        page = [rows.delivery(r) for r in found[:limit]]
        return Page(page, page[-1].id if len(found) > limit else None)

    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        found = await self._read(
            f"SELECT {DELIVERY_COLS} FROM deliveries WHERE event_id = ? ORDER BY id", (event_id,)
        )
        return [rows.delivery(r) for r in found]

    async def requeue(self, delivery_ids: Sequence[str], now: float) -> int:
        return int(await self._write("requeue", list(delivery_ids), now))

    async def cancel(self, delivery_ids: Sequence[str]) -> list[str]:
        if not delivery_ids:
            return []
        return list(await self._write("cancel", list(delivery_ids)))

    async def release(self, held: Mapping[str, str]) -> None:
        if held:
            await self._write("release", dict(held))

    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        return bool(await self._write("defer", delivery_id, lease_token, until))

    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        # One server process owns the database: its workers ask it, so this is every
        # worker's bucket (nothing to persist: a restart starts with a full bucket).
        return self._slots.take(key, rate, burst, now)

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        if not held:
            return []
        return list(await self._write("hold", dict(held)))

    async def failed_since(self, since: float, target_id: str | None = None) -> list[str]:
        where, params = _where(sql_filters.failed_since(since, target_id))
        found = await self._read(f"SELECT id FROM deliveries {where} ORDER BY id", params)
        return [r[0] for r in found]

    async def count_pending(self) -> int:
        # Kept by triggers in the writer's schema: O(1) however deep the queue.
        found = await self._read("SELECT value FROM meta WHERE key = 'pending_deliveries'")
        return int(found[0][0])

    async def prune(self, events_before: float, idempotency_before: float) -> int:
        """In chunks of `PRUNE_CHUNK` events, each its own (group-committed) transaction,
        so ingest commits interleave with a long prune instead of waiting it out."""
        id_before = id_floor("evt_", events_before)
        total = 0
        while True:
            dropped = int(
                await self._write(
                    "prune", events_before, idempotency_before, id_before, PRUNE_CHUNK
                )
            )
            total += dropped
            if dropped < PRUNE_CHUNK:
                return total


def _where(clauses: Sequence[sql_filters.Clause]) -> tuple[str, tuple[Any, ...]]:
    sql, values = sql_filters.where(clauses, lambda _: "?")
    return sql, tuple(values)


def _write_to(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write to the writer's pipe; a writer that just died fails the write, and its reader
    task (`_read_answers`) then fails every request waiting on it: no traceback here."""
    with contextlib.suppress(OSError, RuntimeError):
        stdin.write(data)
