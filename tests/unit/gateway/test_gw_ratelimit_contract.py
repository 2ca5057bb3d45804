"""The rate-limit contract: memory and Redis buckets pass the same tests.

Memory buckets run on an injected clock, so their GCRA maths is checked exactly; Redis
buckets run on the server's clock, so their tests use small rates and poll until a refill
arrives ("eventually allowed"), never asserting how long anything took.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.limits import keys
from gateway.limits.buckets import Buckets, Decision, MemoryBuckets, RedisBuckets
from gateway.limits.resp import RespClient
from gateway.observability.metrics import Metrics

REFILL_DEADLINE = 5.0
SLACK = 1e-6  # float TATs may land a few ulps past an exact bound


class Limiter:
    """One backend under test: builds buckets and lets time pass on their clock."""

    def __init__(self, name: str, redis_url: dict[str, Any] | None = None) -> None:
        self.name = name
        self.redis_url = redis_url
        self.now = 1_000_000.0  # the fake clock of memory buckets
        self.built: list[Buckets] = []

    def build(self, global_rate: float, global_burst: int, **kwargs: Any) -> Buckets:
        buckets: Buckets
        if self.redis_url is None:
            buckets = MemoryBuckets(global_rate, global_burst, clock=lambda: self.now)
        else:
            buckets = RedisBuckets(
                RespClient(self.redis_url["url"]),
                key_prefix=self.redis_url["prefix"],
                global_rate=global_rate,
                global_burst=global_burst,
                **kwargs,
            )
        self.built.append(buckets)
        return buckets

    async def wait(self, seconds: float) -> None:
        if self.redis_url is None:
            self.now += seconds
        else:
            await asyncio.sleep(seconds)

    async def eventually_allowed(self, check: Callable[[], Awaitable[Decision]]) -> Decision:
        """Wait out each refusal's retry_after until a request is allowed (with a deadline)."""
        deadline = time.monotonic() + REFILL_DEADLINE
        while True:
            decision = await check()
            if decision.allowed:
                return decision
            assert time.monotonic() < deadline, f"still refused: {decision}"
            await self.wait(max(decision.retry_after, 0.001))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "redis":
        made = Limiter("redis", request.getfixturevalue("redis_url"))
    else:
        made = Limiter("memory")
    try:
        yield made
    finally:
        for buckets in made.built:
            await buckets.close()


# the shared contract


async def test_burst_is_allowed_then_refused(limiter: Limiter) -> None:
    buckets = limiter.build(global_rate=1000, global_burst=1000)
    allowed = [await buckets.check("app_a", 0.5, 5) for _ in range(5)]
    assert [d.allowed for d in allowed] == [True] * 5
    assert [d.remaining for d in allowed] == [4, 3, 2, 1, 0]
    assert {(d.limit, d.scope, d.retry_after) for d in allowed} == {(5, "", 0.0)}
    for k, d in enumerate(allowed, start=1):
        assert 2.0 * (k - 1) < d.reset <= 2.0 * k + SLACK  # k tokens spent, 2 s each to refill

    refused = await buckets.check("app_a", 0.5, 5)
    assert (refused.allowed, refused.scope, refused.remaining, refused.limit) == (
        False,
        "app",
        0,
        5,
    )
    assert 0 < refused.retry_after <= 2.0 + SLACK
    assert 8.0 < refused.reset <= 10.0 + SLACK


async def test_refill_at_the_rate_allows_again(limiter: Limiter) -> None:
    buckets = limiter.build(global_rate=1000, global_burst=1000)
    assert [(await buckets.check("app_a", 20, 2)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    again = await limiter.eventually_allowed(lambda: buckets.check("app_a", 20, 2))
    assert again.allowed and again.scope == "" and again.limit == 2


async def test_app_bucket_refusal_spends_no_global_token(limiter: Limiter) -> None:
    buckets = limiter.build(global_rate=0.01, global_burst=3)
    assert (await buckets.check("app_a", 0.01, 1)).allowed
    for _ in range(5):
        refused = await buckets.check("app_a", 0.01, 1)
        assert (refused.allowed, refused.scope) == (False, "app")
    # the five refusals spent nothing: two global tokens are left for other apps
    assert (await buckets.check("app_b", 0.01, 1)).allowed
    assert (await buckets.check("app_c", 0.01, 1)).allowed
    exhausted = await buckets.check("app_d", 0.01, 1)
    assert (exhausted.allowed, exhausted.scope) == (False, "global")


async def test_global_refusal_spends_no_app_token(limiter: Limiter) -> None:
    buckets = limiter.build(global_rate=10, global_burst=2)
    first = await buckets.check("app_a", 0.01, 3)
    assert (first.allowed, first.remaining) == (True, 2)
    assert (await buckets.check("app_b", 0.01, 3)).allowed
    for _ in range(3):
        refused = await buckets.check("app_a", 0.01, 3)
        assert (refused.allowed, refused.scope, refused.remaining, refused.limit) == (
            False,
            "global",
            0,
            3,
        )
        assert 0 < refused.retry_after <= 0.1 + SLACK
    # once the global bucket refills, app_a has exactly one token fewer than its burst
    again = await limiter.eventually_allowed(lambda: buckets.check("app_a", 0.01, 3))
    assert again.remaining == 1


async def test_apps_have_their_own_buckets(limiter: Limiter) -> None:
    buckets = limiter.build(global_rate=1000, global_burst=1000)
    assert [(await buckets.check("app_a", 0.01, 2)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    other = [await buckets.check("app_b", 0.01, 3) for _ in range(4)]
    assert [(d.allowed, d.remaining, d.limit) for d in other] == [
        (True, 2, 3),
        (True, 1, 3),
        (True, 0, 3),
        (False, 0, 3),
    ]
    assert other[-1].scope == "app"
    assert not (await buckets.check("app_a", 0.01, 2)).allowed


async def test_global_refusal_reports_the_global_wait(limiter: Limiter) -> None:
    buckets = limiter.build(global_rate=0.5, global_burst=1)
    assert (await buckets.check("app_a", 100, 10)).allowed
    refused = await buckets.check("app_b", 100, 10)
    assert (refused.allowed, refused.scope, refused.limit) == (False, "global", 10)
    assert 0 < refused.retry_after <= 2.0 + SLACK


# memory: exact GCRA maths on an injected clock


def clocked(
    global_rate: float = 1000.0, global_burst: int = 1000
) -> tuple[MemoryBuckets, list[float]]:
    now = [0.0]
    return MemoryBuckets(global_rate, global_burst, clock=lambda: now[0]), now


def test_memory_gcra_rate_10_burst_10() -> None:
    buckets, now = clocked()
    burst = [buckets.check_now("a", 10, 10) for _ in range(10)]
    assert [d.allowed for d in burst] == [True] * 10
    assert [d.remaining for d in burst] == list(range(9, -1, -1))
    assert [d.reset for d in burst] == pytest.approx([0.1 * k for k in range(1, 11)])

    eleventh = buckets.check_now("a", 10, 10)
    assert eleventh == Decision(False, pytest.approx(0.1), 0, 10, pytest.approx(1.0), "app")

    now[0] = 0.05
    halfway = buckets.check_now("a", 10, 10)
    assert not halfway.allowed and halfway.retry_after == pytest.approx(0.05)

    now[0] = 0.1
    refilled = buckets.check_now("a", 10, 10)
    assert (refilled.allowed, refilled.remaining) == (True, 0)
    assert refilled.reset == pytest.approx(1.0)
    assert buckets.check_now("a", 10, 10).retry_after == pytest.approx(0.1)

    now[0] = 1.1  # a full second after the last token: the bucket is full again
    again = [buckets.check_now("a", 10, 10) for _ in range(11)]
    assert [d.allowed for d in again] == [True] * 10 + [False]
    assert again[0].remaining == 9


@pytest.mark.parametrize(
    ("rate", "burst"), [(3, 10), (7, 5), (6, 50), (0.3, 3), (33, 13), (1000, 100)]
)
@pytest.mark.parametrize("start", [0.0, 1e6])
def test_memory_whole_burst_despite_float_rounding(rate: float, burst: int, start: float) -> None:
    buckets, now = clocked(1e9, 10**9)
    now[0] = start
    decisions = [buckets.check_now("a", rate, burst) for _ in range(burst + 1)]
    assert [d.allowed for d in decisions] == [True] * burst + [False]
    assert [d.remaining for d in decisions[:-1]] == list(range(burst - 1, -1, -1))
    assert decisions[-1].retry_after == pytest.approx(1 / rate, abs=SLACK)
    now[0] += decisions[-1].retry_after
    assert buckets.check_now("a", rate, burst)[:3] == (True, 0.0, 0)


def test_memory_global_bucket_maths() -> None:
    buckets, now = clocked(global_rate=2, global_burst=1)
    assert buckets.check_now("a", 100, 10).allowed
    refused = buckets.check_now("b", 100, 10)
    assert refused == Decision(False, pytest.approx(0.5), 0, 10, 0.0, "global")
    now[0] = 0.5
    allowed = buckets.check_now("b", 100, 10)
    assert (allowed.allowed, allowed.remaining) == (True, 9)


async def test_memory_check_is_check_now() -> None:
    buckets, _ = clocked()
    assert await buckets.check("a", 1, 2) == Decision(True, 0.0, 1, 2, pytest.approx(1.0), "")
    assert buckets.check_now("a", 1, 2) == Decision(True, 0.0, 0, 2, pytest.approx(2.0), "")
    assert (await buckets.check("a", 1, 2)).scope == "app"


def test_memory_idle_buckets_behave_as_full_after_a_sweep() -> None:
    buckets, now = clocked()
    assert [buckets.check_now("a", 1, 3).allowed for _ in range(4)] == [True] * 3 + [False]
    now[0] = 120.0  # past the sweep interval: a's TAT is forgotten
    assert [buckets.check_now("a", 1, 3).remaining for _ in range(3)] == [2, 1, 0]
    assert not buckets.check_now("a", 1, 3).allowed


# Redis only


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_client() -> RespClient:
    return RespClient(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.5, connect_timeout=0.5)


def test_rate_limit_keys_share_one_hash_slot() -> None:
    prefix = "hookgate:"
    tags = {
        re.search(r"\{[^}]*\}", key).group(0)  # type: ignore[union-attr]
        for key in (
            keys.app_bucket(prefix, "app_1"),
            keys.app_bucket(prefix, "app_2"),
            keys.global_bucket(prefix),
        )
    }
    assert tags == {"{hookgate:rl}"}
    slots = {
        key_slot(k.encode())
        for k in (
            keys.app_bucket(prefix, "x"),
            keys.app_bucket(prefix, "y"),
            keys.global_bucket(prefix),
        )
    }
    assert len(slots) == 1


@pytest.mark.redis
async def test_redis_buckets_live_in_one_slot_and_expire(redis_url: dict[str, Any]) -> None:
    prefix = redis_url["prefix"]
    buckets = RedisBuckets(
        RespClient(redis_url["url"]), key_prefix=prefix, global_rate=1, global_burst=100
    )
    inspect = aioredis.Redis.from_url(redis_url["url"])
    try:
        assert (await buckets.check("app_1", 2, 4)).allowed
        app_key, global_key = keys.app_bucket(prefix, "app_1"), keys.global_bucket(prefix)
        assert key_slot(app_key.encode()) == key_slot(global_key.encode())
        app_ttl = await inspect.pttl(app_key)
        global_ttl = await inspect.pttl(global_key)
        assert 0 < app_ttl <= 501  # one token spent at 2/s: full again within 500 ms
        assert 0 < global_ttl <= 1001  # one token at 1/s: 1 s (long enough to read under load)
    finally:
        await buckets.close()
        await inspect.aclose()


@pytest.mark.redis
async def test_redis_script_is_reloaded_after_script_flush(redis_url: dict[str, Any]) -> None:
    metrics = Metrics()
    client = aioredis.Redis.from_url(redis_url["url"])
    buckets = RedisBuckets(
        RespClient(redis_url["url"]),
        key_prefix=redis_url["prefix"],
        global_rate=100,
        global_burst=100,
        metrics=metrics,
    )
    try:
        assert [(await buckets.check("app_1", 0.01, 3)).remaining for _ in range(2)] == [2, 1]
        await client.script_flush()
        third = await buckets.check("app_1", 0.01, 3)
        assert (third.allowed, third.remaining) == (True, 0)
        fourth = await buckets.check("app_1", 0.01, 3)
        assert (fourth.allowed, fourth.scope) == (False, "app")
        assert metrics.value("hookgate_ratelimit_redis_errors_total") == 0
    finally:
        await buckets.close()
        await client.aclose()


async def test_unreachable_redis_fails_open_and_still_enforces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    buckets = RedisBuckets(
        unreachable_client(),
        key_prefix="hgtest:",
        global_rate=100,
        global_burst=100,
        metrics=metrics,
        retry_seconds=0,  # try Redis on every request, so every request fails
    )
    try:
        with caplog.at_level(logging.WARNING, logger="hookgate.ratelimit"):
            decisions = [await buckets.check("app_1", 0.01, 2) for _ in range(4)]
        assert [(d.allowed, d.scope) for d in decisions] == [
            (True, ""),
            (True, ""),
            (False, "app"),
            (False, "app"),
        ]
        assert [d.remaining for d in decisions] == [1, 0, 0, 0]
        assert metrics.value("hookgate_ratelimit_redis_errors_total") == 4
        warnings = [r for r in caplog.records if r.name == "hookgate.ratelimit"]
        assert len(warnings) == 1  # at most once a minute
        assert "failing open" in warnings[0].getMessage()
    finally:
        await buckets.close()


async def test_an_outage_is_not_retried_on_every_request() -> None:
    metrics = Metrics()
    buckets = RedisBuckets(
        unreachable_client(),
        key_prefix="hgtest:",
        global_rate=100,
        global_burst=100,
        metrics=metrics,
        retry_seconds=60,
    )
    try:
        decisions = [await buckets.check("app_1", 0.01, 3) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert metrics.value("hookgate_ratelimit_redis_errors_total") == 1
    finally:
        await buckets.close()


async def test_unreachable_redis_fail_closed_refuses() -> None:
    buckets = RedisBuckets(
        unreachable_client(),
        key_prefix="hgtest:",
        global_rate=100,
        global_burst=100,
        on_error="closed",
        retry_seconds=1.0,
    )
    try:
        assert await buckets.check("app_1", 10, 5) == Decision(False, 1.0, 0, 5, 0.0, "unavailable")
        assert await buckets.check("app_2", 10, 5) == Decision(False, 1.0, 0, 5, 0.0, "unavailable")
    finally:
        await buckets.close()
