"""What only the PostgreSQL store has: migrations, day partitions, group commit, processes
sharing one database. The behaviour every store shares is in test_gw_store_contract.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from actions.ids import delivery_id
from actions.model import Attempt, Delivery, Lease
from gateway.errors import StoreError
from gateway.ids import sortable_id
from gateway.models import Event
from gateway.store.postgres import schema as postgres_schema
from gateway.store.postgres.store import DAY, PostgresStore, run_migrations

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DUE_IDS = "SELECT * FROM hookgate_due_ids($1, $2, $3::text[])"


def event(at: float, key: str | None = None) -> Event:
    return Event(
        id=sortable_id("evt_", at),
        app_id="app_1",
        event_type="x",
        received_at=at,
        payload=b'{"n": 1}',
        idempotency_key=key,
    )


def delivery(event_id: str, at: float) -> Delivery:
    return Delivery(
        id=delivery_id(at),
        event_id=event_id,
        action_type="webhook",
        url="http://127.0.0.1:9/hook",
        created_at=at,
        next_attempt_at=at,
    )


async def fetch(pg: dict[str, Any], sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg["url"], server_settings={"search_path": pg["schema"]})
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@pytest.fixture
async def store(postgres_url: dict[str, Any]) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(postgres_url["url"], schema_name=postgres_url["schema"])
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_migrations_apply_once_and_again_is_a_no_op(postgres_url: dict[str, Any]) -> None:
    latest = postgres_schema.latest_version()
    applied, version = await run_migrations(postgres_url["url"], postgres_url["schema"])
    assert applied == [v for v, _ in postgres_schema.migrations()] and version == latest
    again, version = await run_migrations(postgres_url["url"], postgres_url["schema"])
    assert (again, version) == ([], latest)
    rows = await fetch(postgres_url, "SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == applied
    # a store opening the migrated schema applies nothing more and works
    s = PostgresStore(postgres_url["url"], schema_name=postgres_url["schema"])
    await s.open()
    try:
        assert (await s.add_event(event(T0), [])).duplicate is False
    finally:
        await s.close()
    rows = await fetch(postgres_url, "SELECT count(*) FROM schema_version")
    assert rows[0][0] == len(applied)


async def test_a_schema_newer_than_the_code_is_refused(postgres_url: dict[str, Any]) -> None:
    await run_migrations(postgres_url["url"], postgres_url["schema"])
    newer = postgres_schema.latest_version() + 1
    await fetch(postgres_url, f"INSERT INTO schema_version (version) VALUES ({newer})")
    s = PostgresStore(postgres_url["url"], schema_name=postgres_url["schema"])
    with pytest.raises(StoreError, match=f"version {newer}, newer than this hookgate"):
        await s.open()
    with pytest.raises(StoreError, match="newer than this hookgate"):
        await run_migrations(postgres_url["url"], postgres_url["schema"])


async def test_retention_drops_whole_day_partitions_and_keeps_recent_days(
    store: PostgresStore, postgres_url: dict[str, Any]
) -> None:
    old = [event(T0 - 2 * DAY + i) for i in range(3)]  # two days before T0's day
    recent = [event(T0 + i) for i in range(2)]
    for e in old + recent:
        await store.add_event(e, [delivery(e.id, e.received_at)])
    parts = {r[0] for r in await fetch(postgres_url, "SELECT tableoid::regclass::text FROM events")}
    assert parts == {"events_20231112", "events_20231114"}
    # finish the old deliveries but one, which stays pending
    await store.claim_due(T0 + 10, 10, Lease("w", T0 + 70))
    for e in old[:2]:
        [d] = await store.deliveries_for_event(e.id)
        await store.finish_attempt(d.id, Attempt(T0, 200, 1.0, None, "ok"), "succeeded", None, "w")

    # the cutoff is the start of T0's day: the old day goes whole, no row is deleted
    cutoff = (T0 // DAY) * DAY
    assert await store.prune(cutoff, cutoff) == 3

    tables = {
        r[0]
        for r in await fetch(
            postgres_url,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass",
        )
    }
    assert "events_20231112" not in tables and "events_20231114" in tables
    for e in old:
        assert await store.get_event(e.id) is None
    for e in recent:
        assert await store.get_event(e.id) == e
    assert await store.count_events() == 2
    # finished deliveries of the dropped day went with it; the pending one stays
    kept = await store.deliveries_for_event(old[2].id)
    assert [d.status for d in kept] == ["pending"]
    assert await store.deliveries_for_event(old[0].id) == []
    # and an event for the dropped day can still be stored (its partition comes back)
    late = event(T0 - 2 * DAY + 100)
    assert (await store.add_event(late, [])).event_id == late.id
    assert await store.get_event(late.id) == late


async def test_concurrent_events_share_transactions(store: PostgresStore) -> None:
    before = (store.transactions, store.committed)
    events = [event(T0 + i / 1000, key=f"k{i}") for i in range(200)]
    results = await asyncio.gather(
        *(store.add_event(e, [delivery(e.id, e.received_at)]) for e in events)
    )
    assert [(r.event_id, r.duplicate) for r in results] == [(e.id, False) for e in events]
    transactions = store.transactions - before[0]
    assert store.committed - before[1] == 200
    assert transactions < 200  # grouped: fewer transactions than events
    assert await store.count_events() == 200 and await store.count_pending() == 200


async def test_a_failing_event_fails_only_its_own_request(store: PostgresStore) -> None:
    good = [event(T0 + i / 1000) for i in range(20)]
    bad = event(T0 + 1)
    clash = delivery(bad.id, T0 + 1)
    await store.add_event(event(T0 + 2), [clash])
    results = await asyncio.gather(
        *(store.add_event(e, []) for e in good),
        store.add_event(bad, [clash]),  # its delivery id is taken: a unique violation
        return_exceptions=True,
    )
    assert isinstance(results[-1], StoreError)
    assert all(not isinstance(r, BaseException) for r in results[:-1])
    assert await store.get_event(bad.id) is None
    for e in good:
        assert await store.get_event(e.id) == e


async def test_two_processes_never_claim_one_delivery_twice(
    postgres_url: dict[str, Any],
) -> None:
    stores = [PostgresStore(postgres_url["url"], schema_name=postgres_url["schema"]) for _ in "ab"]
    for s in stores:
        await s.open()
    try:
        e = event(T0)
        await stores[0].add_event(e, [delivery(e.id, T0 + i / 1000) for i in range(60)])
        claims = await asyncio.gather(
            *(stores[i % 2].claim_due(T0 + 1, 7, Lease(f"w{i}", T0 + 60)) for i in range(12))
        )
        ids = [d.id for claim in claims for d in claim]
        assert len(ids) == 60 and len(set(ids)) == 60
    finally:
        for s in stores:
            await s.close()


async def test_errors_are_store_errors(postgres_url: dict[str, Any]) -> None:
    unreachable = PostgresStore("postgresql://127.0.0.1:1/test")
    with pytest.raises(StoreError, match="cannot reach PostgreSQL"):
        await unreachable.open()
    closed = PostgresStore(postgres_url["url"], schema_name=postgres_url["schema"])
    with pytest.raises(StoreError, match="not open"):
        await closed.count_events()


def test_postgres_url_comes_from_the_environment() -> None:
    from gateway.config import load_settings

    settings = load_settings(
        None,
        env={"HOOKGATE_STORAGE_BACKEND": "postgres", "HOOKGATE_POSTGRES_URL": "postgresql://db/x"},
    )
    assert (settings.storage.backend, settings.storage.postgres_url) == (
        "postgres",
        "postgresql://db/x",
    )
    assert load_settings(None, env={}).storage.postgres_url == (
        "postgresql://127.0.0.1:5432/hookgate"
    )


def test_hookgate_migrate_applies_then_reports_up_to_date(
    postgres_url: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli import main

    url = f"{postgres_url['url']}?search_path={postgres_url['schema']}"
    monkeypatch.setenv("HOOKGATE_STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("HOOKGATE_POSTGRES_URL", url)
    latest = postgres_schema.latest_version()
    assert main(["migrate"]) == 0
    assert f"schema at version {latest}" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"schema up to date at version {latest}"
    monkeypatch.setenv("HOOKGATE_STORAGE_BACKEND", "sqlite")
    assert main(["migrate"]) != 0
    assert "hookgate migrate is for storage.backend" in capsys.readouterr().err


async def test_concurrent_finishes_share_a_transaction_and_keep_the_fence(
    store: PostgresStore,
) -> None:
    e = event(T0)
    rows = [delivery(e.id, T0 + i / 1000) for i in range(40)]
    await store.add_event(e, rows)
    assert len(await store.claim_due(T0 + 1, 100, Lease("w", T0 + 60))) == 40
    ok = Attempt(T0 + 1, 200, 1.0, None, "ok")
    before = store.transactions
    # every other call comes from a stale holder; one delivery is finished twice
    results = await asyncio.gather(
        *(
            store.finish_attempt(d.id, ok, "succeeded", None, "w" if i % 2 == 0 else "stale")
            for i, d in enumerate(rows)
        ),
        store.finish_attempt(rows[0].id, ok, "succeeded", None, "w"),
    )
    assert results[:40] == [i % 2 == 0 for i in range(40)]
    assert results[40] is False  # the first of the two took the lease with it
    assert store.transactions - before < 41
    for i, d in enumerate(rows):
        row = await store.get_delivery(d.id)
        assert row is not None
        expected = ("succeeded", 1, (ok,)) if i % 2 == 0 else ("pending", 0, ())
        assert (row.status, row.attempt_count, row.attempts) == expected


async def test_events_of_one_batch_keep_each_its_own_lease(store: PostgresStore) -> None:
    events = [event(T0 + i / 1000) for i in range(10)]
    rows = [delivery(e.id, e.received_at) for e in events]
    before = store.transactions
    await asyncio.gather(
        *(
            store.add_event(e, [d], lease=Lease(f"t{i}", T0 + 60))
            for i, (e, d) in enumerate(zip(events, rows, strict=True))
        )
    )
    assert store.transactions - before < 10
    ok = Attempt(T0 + 1, 200, 1.0, None, "ok")
    for i, d in enumerate(rows):
        other = f"t{(i + 1) % 10}"
        assert await store.finish_attempt(d.id, ok, "succeeded", None, other) is False
        assert await store.finish_attempt(d.id, ok, "succeeded", None, f"t{i}") is True


async def test_every_connection_plans_each_statement_for_its_parameters(
    store: PostgresStore,
) -> None:
    """A generic plan made while the tables were empty is never made again without an
    ANALYZE: the store's sessions use custom plans (see `SESSION_SETTINGS`)."""
    async with store.pool.acquire() as a, store.pool.acquire() as b:
        modes = {await a.fetchval("SHOW plan_cache_mode"), await b.fetchval("SHOW plan_cache_mode")}
    assert modes == {"force_custom_plan"}
    # the schema setting is still applied next to it
    assert await store.pool.fetchval("SELECT current_schema()") == store._schema


async def test_a_claim_that_skips_a_host_reads_none_of_its_rows(store: PostgresStore) -> None:
    """A hung host's backlog is not walked on every claim that skips it (migration 0007):
    the claim visits hosts, so 6 000 due rows of the skipped host cost it a few pages,
    where walking them in time order read every one."""
    first = event(T0)
    hung = [
        dataclasses.replace(delivery(first.id, T0 + n * 0.001), url="https://hung.example:8443/x")
        for n in range(6000)
    ]
    healthy = dataclasses.replace(delivery(first.id, T0 + 10), url="https://ok.example/x")
    await store.add_event(first, [*hung, healthy])

    async def claim_pages(skip: list[str]) -> tuple[list[str], int]:
        async with store.pool.acquire() as conn, conn.transaction():
            ids = [r[0] for r in await conn.fetch(DUE_IDS, T0 + 100, 10, skip)]
            plan = await conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + DUE_IDS, T0 + 100, 10, skip
            )
        top = json.loads(plan)[0]["Plan"]
        return ids, top["Shared Hit Blocks"] + top["Shared Read Blocks"]

    ids, pages = await claim_pages(["hung.example:8443"])
    assert ids == [healthy.id]
    assert pages < 100, pages
    ids, _ = await claim_pages([])  # without a skip: the walk in time order, hung rows first
    assert ids == [d.id for d in hung[:10]]
