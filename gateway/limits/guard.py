"""Guard against token guessing: too many unknown-token 404s from one address → 429s.

This is a moving-window count ("N misses per minute"), which is what the `limits` library
does well, so it is used here rather than the GCRA buckets. Addresses over the limit are
remembered in-process for the rest of the window, so a blocked guesser costs one dict
lookup per request and never learns whether a later guess would have been right.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

log = logging.getLogger("hookgate.guard")

BLOCK_SECONDS = 60.0


class GuessGuard:
    def __init__(self, per_minute: int, storage: Storage | None = None) -> None:
        self._item = RateLimitItemPerMinute(max(1, per_minute))
        self._storage = storage if storage is not None else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._blocked: dict[str, float] = {}
        self._last_error_log = -BLOCK_SECONDS

    @classmethod
    def with_redis(cls, per_minute: int, url: str, key_prefix: str) -> GuessGuard:
        uri = "async+" + url if not url.startswith("async+") else url
        # Short timeouts, as for the rate-limit client: a Redis that stopped answering must
        # cost an unknown-token request a fraction of a second, not redis-py's 5 s default.
        storage = RedisStorage(
            uri,
            implementation="redispy",
            key_prefix=key_prefix,
            socket_connect_timeout=0.25,
            socket_timeout=0.5,
        )
        return cls(per_minute, storage)

    async def close(self) -> None:
        """Close the storage's Redis connections, if it has any."""
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()

    def blocked(self, address: str) -> bool:
        """Whether `address` is serving a block; the hot path, no I/O."""
        until = self._blocked.get(address)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._blocked[address]
        return False

    async def miss(self, address: str) -> bool:
        """Count one unknown-token request; True when it puts `address` over the limit."""
        try:
            allowed = await self._limiter.hit(self._item, "unknown-token", address)
        except Exception as exc:  # storage down: do not turn an outage into 429s
            now = time.monotonic()
            if now - self._last_error_log >= 60:
                self._last_error_log = now
                log.warning("token-guessing guard storage unavailable: %s", type(exc).__name__)
            return False
        if not allowed:
            now = time.monotonic()
            if len(self._blocked) >= 1024:
                # Addresses that never came back would otherwise stay forever.
                for stale in [a for a, until in self._blocked.items() if until <= now]:
                    del self._blocked[stale]
            self._blocked[address] = now + BLOCK_SECONDS
        return not allowed
