"""PostgreSQL benches: ingest on the PostgreSQL store against the bare-Starlette baseline,
and the cost of retention (dropping a day's partition vs deleting the same day row by row).

Each run works in a schema of its own (`hgbench_<pid>_...`) of HOOKGATE_BENCH_POSTGRES_URL,
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from bench import procs, workdir, wrk
from gateway.records.apps import create_app
from gateway.store.postgres.store import DAY, PostgresStore

POSTGRES_URL = os.environ.get("HOOKGATE_BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


async def _execute(sql: str, schema: str | None = None) -> None:
    settings = {} if schema is None else {"search_path": schema}
    conn = await asyncpg.connect(POSTGRES_URL, server_settings=settings)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def bench_schema(name: str) -> Iterator[str]:
    schema = f"hgbench_{os.getpid()}_{name}"
    asyncio.run(_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        asyncio.run(_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def available() -> str | None:
    """Why the PostgreSQL benches cannot run here (None: they can)."""
    try:
        asyncio.run(_execute("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc})"
    return None


def schema_url(schema: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}search_path={schema}"


def create_bench_app(schema: str) -> str:
    async def run() -> str:
        store = PostgresStore(POSTGRES_URL, schema_name=schema)
        await store.open()
        try:
            return (await create_app(store, "bench-app"))[1]
        finally:
            await store.close()

    return asyncio.run(run())


def _count(schema: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            return int(await conn.fetchval("SELECT count(*) FROM events"))
        finally:
            await conn.close()

    return asyncio.run(run())


def bench_ingest(tmp: Path, seconds: int, rounds: int) -> dict[str, float]:
    """Baseline vs hookgate on the PostgreSQL store (100 rules, one delivery per event),
    alternated in one run; medians."""
    runs: dict[str, list[wrk.WrkResult]] = {"baseline": [], "hookgate_postgres": []}
    with (
        bench_schema("ingest") as schema,
        procs.uvicorn_app("bench.sink:app", tmp, "pgsink") as sink,
    ):
        work = tmp / "ingest-postgres"
        work.mkdir()
        workdir.write_rules(work, matching_urls=[sink.url + "/hook"])
        token = create_bench_app(schema)
        env = workdir.base_env(
            work, HOOKGATE_STORAGE_BACKEND="postgres", HOOKGATE_POSTGRES_URL=schema_url(schema)
        )
        for round_no in range(rounds):
            for variant in runs:
                if variant == "baseline":
                    with procs.uvicorn_app("bench.baseline:app", tmp, "pgbaseline") as base:
                        result = wrk.run(base.url + "/api/event/x", tmp, seconds=seconds)
                else:
                    before = _count(schema)
                    with procs.hookgate(work, env, variant) as hg:
                        result = wrk.run(f"{hg.url}/api/event/{token}", tmp, seconds=seconds)
                    stored = _count(schema) - before
                    if stored < result.accepted:
                        raise SystemExit(
                            f"{variant}: {result.accepted} events answered 202 but {stored} stored"
                        )
                runs[variant].append(result)
                log(
                    f"ingest round {round_no + 1} {variant}: {result.rps:.0f} req/s, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"202s {result.accepted}, other {result.other}"
                )
    out: dict[str, float] = {}
    for variant, results in runs.items():
        out[f"ingest_pg_{variant}_rps"] = statistics.median(r.rps for r in results)
        out[f"ingest_pg_{variant}_p99_ms"] = statistics.median(r.p99_ms for r in results)
        out[f"ingest_pg_{variant}_non202"] = float(sum(r.other for r in results))
    out["ingest_postgres_ratio"] = (
        out["ingest_pg_hookgate_postgres_rps"] / out["ingest_pg_baseline_rps"]
    )
    return out


SEED = """
INSERT INTO events (id, app_id, event_type, received_at, payload, headers, matched_rules)
SELECT 'evt_' || lpad(to_hex(g), 26, '0'), 'app_' || (g % 10), 'order.created',
       $1 + (g - $2) * $3, convert_to('{"order": ' || g || ', "total": 42.5}', 'UTF8'),
       '{"content-type":"application/json"}', '[]'
FROM generate_series($2::bigint, $2::bigint + $4 - 1) AS g
"""


async def _retention(events: int, days: int, schema: str) -> dict[str, float]:
    store = PostgresStore(POSTGRES_URL, schema_name=schema)
    await store.open()
    start = (time.time() // DAY - days - 1) * DAY  # whole UTC days, all in the past
    per_day = events // days
    try:
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            for day in range(days):
                await conn.execute("SELECT hookgate_event_partition($1)", start + day * DAY)
            seeded_at = time.perf_counter()
            for day in range(days):
                first = day * per_day
                await conn.execute(SEED, start + day * DAY, first, DAY / per_day, per_day)
            await conn.execute("ANALYZE events")
            seed_s = time.perf_counter() - seeded_at
            total = int(await conn.fetchval("SELECT count(*) FROM events"))
            log(f"retention: seeded {total} events over {days} days in {seed_s:.0f} s")

            # day 0: the store's own prune, which drops the partition
            t = time.perf_counter()
            dropped = await store.prune(start + DAY, start + DAY)
            drop_s = time.perf_counter() - t
            # day 1, the same size: what a store without partitions does, row by row
            t = time.perf_counter()
            deleted = await conn.execute(
                "DELETE FROM events WHERE received_at >= $1 AND received_at < $2",
                start + DAY,
                start + 2 * DAY,
            )
            delete_s = time.perf_counter() - t
            # ... and the vacuum that must follow it to reclaim the dead rows
            t = time.perf_counter()
            await conn.execute("VACUUM events")
            vacuum_s = time.perf_counter() - t
            # the bare DROP TABLE of a day partition, without the prune's bookkeeping
            # (counting the day's events, deleting its finished deliveries)
            part = await conn.fetchval("SELECT hookgate_event_partition($1)", start + 2 * DAY)
            t = time.perf_counter()
            await conn.execute(f'DROP TABLE "{part}"')
            bare_drop_s = time.perf_counter() - t
        finally:
            await conn.close()
    finally:
        await store.close()
    log(
        f"retention at {total} events: drop partition ({dropped} events) {drop_s * 1000:.1f} ms,"
        f" DELETE of the same day ({deleted}) {delete_s * 1000:.0f} ms + VACUUM"
        f" {vacuum_s * 1000:.0f} ms; bare DROP TABLE {bare_drop_s * 1000:.1f} ms"
    )
    return {
        "retention_events": float(total),
        "retention_day_events": float(dropped),
        "retention_drop_partition_ms": drop_s * 1000,
        "retention_delete_rows_ms": delete_s * 1000,
        "retention_vacuum_after_delete_ms": vacuum_s * 1000,
        "retention_bare_drop_table_ms": bare_drop_s * 1000,
        "retention_seed_s": seed_s,
    }


def bench_retention(events: int, days: int = 10) -> dict[str, float]:
    """Seed `events` events over `days` day partitions; time dropping one day's partition
    (`prune`) against a row-by-row DELETE of the next day, the same number of rows."""
    with bench_schema("retention") as schema:
        return asyncio.run(_retention(events, days, schema))
