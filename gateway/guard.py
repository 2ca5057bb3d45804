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
        storage = RedisStorage(uri, implementation="redispy", key_prefix=key_prefix)
        return cls(per_minute, storage)

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
            self._blocked[address] = time.monotonic() + BLOCK_SECONDS
        return not allowed
