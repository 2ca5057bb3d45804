"""Bytes one stored event costs on each store backend: the bench's event body and the
headers a sender's request brings, with one pending webhook delivery (one rule matched),
as ingest stores it. For sizing a retention window (docs/deployment.md).

    python bench/storage_bytes.py [--backend memory|sqlite|redis|postgres] [-n 20000]

- memory: Python heap growth (tracemalloc) per event.
- sqlite: growth of the database file (WAL checkpointed) per event.
- redis: growth of the server's `used_memory` per event (under a prefix of its own on
  `HOOKGATE_BENCH_REDIS_URL`, default db 15; deleted afterwards).
- postgres: growth of the tables of a schema of its own (`hgbytes_<pid>`, on
  `HOOKGATE_TEST_POSTGRES_URL`; dropped afterwards): heap, indexes and TOAST of every
  table (`pg_total_relation_size`), so other users of the database do not count.
  A build without the PostgreSQL store says so and exits 2: nothing is estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from actions import Delivery
from bench.wrk import EVENT_BODY
from gateway.config import Settings, load_settings
from gateway.errors import HookgateError
from gateway.ids import new_id
from gateway.models import App, Event
from gateway.store import Store, build_store, db_path

BACKENDS = ("memory", "sqlite", "redis", "postgres")
BATCH = 200  # events written concurrently, as a busy ingest does (group commit)
REDIS_URL = os.environ.get("HOOKGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("HOOKGATE_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
PG_SCHEMA = f"hgbytes_{os.getpid()}"
PG_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'
"""
HEADERS = {
    "host": "hooks.example.com",
    "user-agent": "GitHub-Hookshot/5a1b2c3",
    "content-type": "application/json",
    "content-length": str(len(EVENT_BODY)),
    "x-github-event": "order.created",
    "x-github-delivery": "0f9c6a50-5b1e-11ef-8b8e-1f2d3c4b5a69",
}


def settings_for(backend: str, work: Path, prefix: str) -> Settings:
    storage: dict[str, Any] = {"backend": backend, "data_dir": str(work), "synchronous": "normal"}
    if backend == "postgres":
        sep = "&" if "?" in POSTGRES_URL else "?"
        storage["postgres_url"] = f"{POSTGRES_URL}{sep}search_path={PG_SCHEMA}"
    return load_settings(
        None, env={}, storage=storage, redis={"url": REDIS_URL, "key_prefix": prefix}
    )


def one_event(app_id: str, now: float) -> tuple[Event, list[Delivery]]:
    event = Event(
        id=new_id("evt"),
        app_id=app_id,
        event_type="order.created",
        received_at=now,
        payload=bytes(bytearray(EVENT_BODY)),  # each its own, as each request's body is
        headers=dict(HEADERS),
        matched_rules=("relay",),
    )
    delivery = Delivery(
        id=new_id("dlv"),
        event_id=event.id,
        action_type="webhook",
        url="https://receiver.example.com/hooks/orders",
        rule_id="relay",
        retry=(5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 86400.0),
        secret_env="RELAY_SECRET",
        created_at=now,
        next_attempt_at=now,
    )
    return event, [delivery]


async def write(store: Store, app_id: str, n: int) -> None:
    now = time.time()
    for start in range(0, n, BATCH):
        batch = [one_event(app_id, now) for _ in range(min(BATCH, n - start))]
        await asyncio.gather(*(store.add_event(e, d) for e, d in batch))


class Meter:
    """Reads the backend's size before and after the writes."""

    def __init__(self, backend: str, settings: Settings) -> None:
        self.backend, self.settings = backend, settings

    async def read(self, store: Store) -> int:
        if self.backend == "memory":
            gc.collect()
            return tracemalloc.get_traced_memory()[0]
        if self.backend == "sqlite":
            import sqlite3

            path = Path(db_path(self.settings))
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return os.stat(path).st_size  # a bench: the blocking call is the point
        if self.backend == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            try:
                client.execute_command("MEMORY", "PURGE")
                return int(client.info("memory")["used_memory"])
            finally:
                client.close()
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            return int(await conn.fetchval(PG_SIZE, PG_SCHEMA))
        finally:
            await conn.close()


async def _postgres(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def measure(backend: str, n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="hookgate-bytes-") as tmp:
        prefix = f"hgbench:bytes:{os.getpid()}:"
        settings = settings_for(backend, Path(tmp), prefix)
        if backend == "postgres":
            await _postgres(
                f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE; CREATE SCHEMA "{PG_SCHEMA}"'
            )
        if backend == "memory":
            tracemalloc.start()
        store = build_store(settings)
        await store.open()
        meter = Meter(backend, settings)
        try:
            app = App(id=new_id("app"), name="bytes", token_hash="0" * 64, created_at=time.time())
            await store.create_app(app)
            await write(store, app.id, BATCH)  # warm-up: the first pages and structures
            before = await meter.read(store)
            await write(store, app.id, n)
            after = await meter.read(store)
        finally:
            await store.close()
            if backend == "postgres":
                await _postgres(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
            if backend == "redis":
                import redis

                client = redis.Redis.from_url(REDIS_URL)
                for pattern in (f"{prefix}*", f"{{{prefix}*"):
                    for key in client.scan_iter(match=pattern, count=1000):
                        client.delete(key)
                client.close()
        return (after - before) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, action="append")
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    print(f"event body {len(EVENT_BODY)} bytes, {len(HEADERS)} headers, 1 webhook delivery")
    for backend in args.backend or ("memory", "sqlite", "redis"):
        try:
            per_event = asyncio.run(measure(backend, args.n))
        except HookgateError as exc:
            print(f"storage_bytes: {backend}: not measurable in this build: {exc}", file=sys.stderr)
            return 2
        print(f"storage_bytes_{backend}={per_event:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
