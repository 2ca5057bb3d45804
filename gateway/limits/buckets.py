"""Token buckets (GCRA) per app and global, with in-process and Redis storage.

GCRA keeps one number per bucket, the theoretical arrival time (TAT): a request at `now`
is allowed when `max(TAT, now) + interval - burst * interval <= now`. The app bucket is
checked first and a request it refuses spends no global token; a request either bucket
refuses spends nothing at all. The maths lives in `gcra`; `MemoryBuckets` and
`RedisBuckets` only decide where the TATs live.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, NamedTuple, Protocol

from redis.exceptions import NoScriptError, RedisError

from gateway.limits import keys
from gateway.observability.metrics import Metrics

log = logging.getLogger("hookgate.ratelimit")

# Float TATs drift by a few ulps per request (10 x 0.1 is not 1.0), which would refuse the
# last token of a burst or under-count `remaining`; comparisons allow one microsecond, the
# resolution of the Redis script.
SLACK = 1e-6


def gcra_take(tat: float | None, now: float, interval: float, burst: int) -> float:
    """One GCRA step: the bucket's new TAT when a request at `now` is allowed (>= `now`),
    or minus the seconds until it would be (< 0) when refused; `tat` None is a full
    bucket. The same maths as `MemoryBuckets.check_now` and gcra.lua, for one bucket."""
    if tat is None or tat < now:
        tat = now
    new_tat = tat + interval
    allow_at = new_tat - burst * interval
    if now < allow_at - SLACK:
        return now - allow_at
    return new_tat


class SlotBuckets:
    """In-process delivery rate limits (`Store.take_delivery_slot` of the memory and
    SQLite stores, whose delivery workers all reach the store through the server process,
    so one dict is the bucket every worker shares)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._next_sweep = 0.0

    def take(self, key: str, rate: float, burst: int, now: float) -> float:
        """0.0 and one slot spent, or the seconds until `key` has a slot (nothing spent)."""
        result = gcra_take(self._tat.get(key), now, 1.0 / rate, burst)
        if result < 0:
            return -result
        self._tat[key] = result
        if now >= self._next_sweep:
            self._next_sweep = now + 60.0
            for stale in [k for k, tat in self._tat.items() if tat <= now]:
                del self._tat[stale]
        return 0.0


class Decision(NamedTuple):
    """Outcome of one check. A NamedTuple, not a dataclass: built on every request."""

    allowed: bool
    retry_after: float  # seconds until the refusing bucket would allow one request
    remaining: int  # whole tokens left in the app bucket after this request
    limit: int  # the app bucket's burst
    reset: float  # seconds until the app bucket is full again
    scope: str  # "app" or "global" when refused, "" when allowed; "unavailable" fail-closed


class Buckets(Protocol):
    """The one interface both storages expose (async so Redis fits)."""

    async def check(self, app_key: str, app_rate: float, app_burst: int) -> Decision: ...
    async def close(self) -> None: ...


class MemoryBuckets:
    """In-process TATs. A refusal is a dict lookup and a few float operations.

    `check_now` is the synchronous core the ingest path calls directly, skipping the
    coroutine; `check` wraps it for the `Buckets` protocol.
    """

    def __init__(
        self,
        global_rate: float,
        global_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tat: dict[str, float] = {}
        self._global_interval = 1.0 / global_rate
        self._global_burst = global_burst
        self._global_tat = 0.0
        self._clock = clock
        self._next_sweep = 0.0

    def check_now(self, app_key: str, app_rate: float, app_burst: int) -> Decision:
        now = self._clock()
        interval = 1.0 / app_rate
        tat = self._tat.get(app_key, now)
        if tat < now:
            tat = now
        new_tat = tat + interval
        allow_at = new_tat - app_burst * interval
        if now < allow_at - SLACK:
            return Decision(False, allow_at - now, 0, app_burst, tat - now, "app")
        g_interval = self._global_interval
        g_tat = self._global_tat
        if g_tat < now:
            g_tat = now
        g_new = g_tat + g_interval
        g_allow = g_new - self._global_burst * g_interval
        if now < g_allow - SLACK:
            return Decision(False, g_allow - now, 0, app_burst, tat - now, "global")
        self._tat[app_key] = new_tat
        self._global_tat = g_new
        if now >= self._next_sweep:
            self._sweep(now)
        remaining = int((now - allow_at + SLACK) / interval)
        return Decision(True, 0.0, remaining, app_burst, new_tat - now, "")

    async def check(self, app_key: str, app_rate: float, app_burst: int) -> Decision:
        return self.check_now(app_key, app_rate, app_burst)

    def _sweep(self, now: float) -> None:
        """Forget full buckets (TAT in the past): they behave exactly like absent ones."""
        self._next_sweep = now + 60.0
        stale = [k for k, tat in self._tat.items() if tat <= now]
        for k in stale:
            del self._tat[k]

    async def close(self) -> None:
        return None


# The GCRA check for every bucket of one event-loop iteration, in one round trip; the
# script's header says what its keys, arguments and answer are.
GCRA_LUA = resources.files("gateway.limits").joinpath("gcra.lua").read_text("utf-8")
_SCOPES = ("", "app", "global")


class ScriptClient(Protocol):
    """What the Redis buckets need of a client: `gateway.limits.resp.RespClient` in the gateway,
    a redis-py client works too."""

    async def script_load(self, script: str) -> str: ...
    async def evalsha(self, sha: str, numkeys: int, *args: str | int) -> Any: ...
    async def aclose(self) -> None: ...


class RedisBuckets:
    """Buckets shared by every gateway process through one Lua script (EVALSHA).

    When Redis fails, requests fall back to in-process buckets (`on_error="open"`) or are
    refused (`"closed"`); the error is logged at most once a minute and counted, and Redis
    is not tried again for `retry_seconds`, so an outage costs no latency per request.
    """

    def __init__(
        self,
        client: ScriptClient,
        *,
        key_prefix: str,
        global_rate: float,
        global_burst: int,
        on_error: str = "open",
        metrics: Metrics | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._global_key = keys.global_bucket(key_prefix)
        self._g_interval = max(1, round(1_000_000 / global_rate))
        self._g_burst = global_burst
        self._fallback = MemoryBuckets(global_rate, global_burst)
        self._on_error = on_error
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._down_until = 0.0
        self._last_log = -math.inf
        self._sha: str | None = None
        self._batch: list[tuple[str, float, int, asyncio.Future[Decision]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._names: dict[str, str] = {}  # app key -> its bucket's Redis key

    async def check(self, app_key: str, app_rate: float, app_burst: int) -> Decision:
        if time.monotonic() < self._down_until:
            return self._degraded(app_key, app_rate, app_burst)
        # Group checks: one EVALSHA in flight at a time, and every check that arrives
        # meanwhile goes in the next one. A round trip costs ~100 us of CPU here (mostly
        # system calls), so under load this is one round trip for many requests; when idle
        # it is one round trip per request, as before.
        loop = self._loop
        if loop is None:  # saved: get_running_loop() costs a getpid() system call
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        if not self._batch and not self._running:
            loop.call_soon(self._flush)
        self._batch.append((app_key, app_rate, app_burst, future))
        return await future

    def _flush(self) -> None:
        if not self._batch or self._running:
            return
        batch, self._batch = self._batch, []
        task = asyncio.create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._ran)

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._flush()  # what queued up behind it

    async def _run(self, batch: list[tuple[str, float, int, asyncio.Future[Decision]]]) -> None:
        if time.monotonic() < self._down_until:  # failed while this batch waited
            for app_key, rate, burst, future in batch:
                if not future.done():
                    future.set_result(self._degraded(app_key, rate, burst))
            return
        names = self._names
        keys_ = [self._global_key]
        for app_key, *_ in batch:
            name = names.get(app_key)
            if name is None:
                name = names[app_key] = keys.app_bucket(self._prefix, app_key)
            keys_.append(name)
        args: list[int] = [self._g_interval, self._g_burst]
        for _, rate, burst, _ in batch:
            args += (max(1, round(1_000_000 / rate)), burst)
        try:
            if self._sha is None:
                self._sha = await self._client.script_load(GCRA_LUA)
            try:
                raw = await self._client.evalsha(self._sha, len(keys_), *keys_, *args)
            except NoScriptError:
                self._sha = await self._client.script_load(GCRA_LUA)
                raw = await self._client.evalsha(self._sha, len(keys_), *keys_, *args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            for app_key, rate, burst, future in batch:
                if not future.done():
                    future.set_result(self._degraded(app_key, rate, burst))
            return
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        values = [int(v) for v in raw]
        for n, (_, _, burst, future) in enumerate(batch):
            allowed, retry_us, remaining, reset_us, scope = values[5 * n : 5 * n + 5]
            if not future.done():
                future.set_result(
                    Decision(
                        bool(allowed),
                        retry_us / 1e6,
                        remaining,
                        burst,
                        reset_us / 1e6,
                        _SCOPES[scope],
                    )
                )

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self._retry_seconds
        if self._metrics is not None:
            self._metrics.inc("hookgate_ratelimit_redis_errors_total")
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.warning(
                "redis rate limiting unavailable, failing %s: %s",
                self._on_error,
                type(exc).__name__,
            )

    def _degraded(self, app_key: str, app_rate: float, app_burst: int) -> Decision:
        if self._on_error == "open":
            return self._fallback.check_now(app_key, app_rate, app_burst)
        return Decision(False, self._retry_seconds, 0, app_burst, 0.0, "unavailable")

    async def close(self) -> None:
        while self._running:  # each finished batch may start the one queued behind it
            await asyncio.gather(*self._running, return_exceptions=True)
            await asyncio.sleep(0)
        await self._client.aclose()
