"""The token-guessing guard: N unknown-token misses a minute per address, then a block.

Run over in-process and Redis storage; a storage that fails must never turn into 429s.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage

from gateway.limits import keys
from gateway.limits.guard import GuessGuard


class BrokenStorage(MemoryStorage):
    """In-process storage whose every count fails, like a storage that went away."""

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        raise ConnectionError("storage is down")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_guard(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[int], GuessGuard]]:
    """Build guards on the backend under test (Redis: the test's own key prefix)."""
    made: list[GuessGuard] = []

    def build(per_minute: int) -> GuessGuard:
        if request.param == "redis":
            redis_url: dict[str, Any] = request.getfixturevalue("redis_url")
            guard = GuessGuard.with_redis(
                per_minute, redis_url["url"], keys.guard_prefix(redis_url["prefix"])
            )
        else:
            guard = GuessGuard(per_minute)
        made.append(guard)
        return guard

    yield build
    for guard in made:
        await guard.close()


async def test_n_misses_are_allowed_and_the_next_blocks(
    make_guard: Callable[[int], GuessGuard],
) -> None:
    guard = make_guard(3)
    assert [await guard.miss("10.0.0.1") for _ in range(3)] == [False, False, False]
    assert not guard.blocked("10.0.0.1")
    assert await guard.miss("10.0.0.1") is True
    assert guard.blocked("10.0.0.1")
    assert guard.blocked("10.0.0.1")  # and it stays blocked


async def test_addresses_are_counted_apart(make_guard: Callable[[int], GuessGuard]) -> None:
    guard = make_guard(2)
    assert [await guard.miss("10.0.0.1") for _ in range(3)] == [False, False, True]
    assert guard.blocked("10.0.0.1")
    assert not guard.blocked("10.0.0.2")
    assert [await guard.miss("10.0.0.2") for _ in range(3)] == [False, False, True]
    assert guard.blocked("10.0.0.2")
    assert not guard.blocked("2001:db8::1")


async def test_the_block_ends_after_its_time(
    make_guard: Callable[[int], GuessGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.limits.guard.BLOCK_SECONDS", 0.05)
    guard = make_guard(1)
    await guard.miss("10.0.0.1")
    assert await guard.miss("10.0.0.1") is True
    assert guard.blocked("10.0.0.1")
    for _ in range(200):
        if not guard.blocked("10.0.0.1"):
            break
        await asyncio.sleep(0.01)
    assert not guard.blocked("10.0.0.1")


async def test_failing_memory_storage_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    guard = GuessGuard(1, BrokenStorage())
    with caplog.at_level(logging.WARNING, logger="hookgate.guard"):
        assert [await guard.miss("10.0.0.1") for _ in range(5)] == [False] * 5
    assert not guard.blocked("10.0.0.1")
    logged = [r for r in caplog.records if r.name == "hookgate.guard"]
    assert len(logged) == 1  # at most once a minute
    assert "ConnectionError" in logged[0].getMessage()


async def test_unreachable_redis_storage_fails_open() -> None:
    guard = GuessGuard.with_redis(1, f"redis://127.0.0.1:{closed_port()}/0", "hgtest:guard")
    try:
        assert [await guard.miss("10.0.0.1") for _ in range(3)] == [False] * 3
        assert not guard.blocked("10.0.0.1")
    finally:
        await guard.close()
