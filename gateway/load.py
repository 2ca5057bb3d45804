"""How busy this process is, so background work can yield to ingest.

A gateway sits in front of someone else's traffic: during a burst, accepting events is the
job and sending what they trigger can wait (it is committed and will not be lost). The
monitor samples the process's CPU time; when the process is close to saturating a core,
delivery workers get only a trickle of new work (`delivery.min_rate_under_load` per second)
and go back to full speed as soon as the burst passes.
"""

from __future__ import annotations

import asyncio
import time

ENTER = 0.85  # share of one core at which the process counts as saturated
LEAVE = 0.65  # ... and below which it no longer does (hysteresis)


class LoadMonitor:
    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.saturated = False
        self.utilisation = 0.0

    async def run(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        while True:
            await asyncio.sleep(self.interval)
            now_wall, now_cpu = time.monotonic(), time.process_time()
            self.utilisation = (now_cpu - cpu) / max(now_wall - wall, 1e-6)
            wall, cpu = now_wall, now_cpu
            if self.saturated:
                self.saturated = self.utilisation >= LEAVE
            else:
                self.saturated = self.utilisation >= ENTER


class Trickle:
    """A token bucket for claims while the process is saturated (one second of burst)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._at = time.monotonic()

    def take(self, wanted: int) -> int:
        now = time.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted
