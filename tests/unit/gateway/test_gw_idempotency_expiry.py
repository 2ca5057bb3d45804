"""An idempotency key older than the TTL belongs to the next event that uses it, even
before the hourly pruner has forgotten it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.models import Event
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis.store import RedisStore
from gateway.store.sqlite.store import SqliteStore


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store
    if request.param == "memory":
        made = MemoryStore(idempotency_ttl=60)
    elif request.param == "sqlite":
        made = SqliteStore(tmp_path / "h.db", synchronous="normal", idempotency_ttl=60)
    else:
        redis = request.getfixturevalue("redis_url")
        made = RedisStore(redis["url"], key_prefix=redis["prefix"], idempotency_ttl=60)
    await made.open()
    yield made
    await made.close()


def event(event_id: str, at: float) -> Event:
    return Event(event_id, "app_1", "t", at, b"{}", idempotency_key="key-1")


async def test_key_within_ttl_is_a_duplicate(store: Store) -> None:
    await store.add_event(event("evt_A", 1000.0), [])
    second = await store.add_event(event("evt_B", 1059.0), [])
    assert second.duplicate and second.event_id == "evt_A"
    assert await store.get_event("evt_B") is None


async def test_key_past_ttl_is_given_to_the_new_event(store: Store) -> None:
    await store.add_event(event("evt_A", 1000.0), [])
    second = await store.add_event(event("evt_B", 1061.0), [])
    assert not second.duplicate and second.event_id == "evt_B"
    assert await store.get_event("evt_B") is not None
    third = await store.add_event(event("evt_C", 1062.0), [])
    assert third.duplicate and third.event_id == "evt_B"
