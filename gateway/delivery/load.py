"""How busy this process is, so background work can yield to ingest.

A gateway sits in front of someone else's traffic: during a burst, accepting events is the
job and sending what they trigger can wait (it is committed and will not be lost). The
monitor samples the event-loop thread's CPU time and, where Linux reports it
(`/proc/self/schedstat`), the time it spent runnable but waiting for a CPU: a busy loop, or
one that other processes (delivery workers, their receivers) keep off the CPU, counts as
saturated. Then delivery workers get only a trickle of new work
(`delivery.min_rate_under_load` per second), and full speed again as soon as the burst
passes.

Only while ingest is answering requests: with none for `INGEST_QUIET` seconds there is no
burst to yield to, and the CPU the server waits for is taken by the drain itself (its
worker, the receivers) or by other programs on the machine. Counting that as saturation
throttled a backlog drain with no ingest at all to the trickle whenever the machine was
busy: `python -m bench --only drain` on 2 shared cores (load 6) trickled 40 of its claims
and drained at 1 314/s, and at 1 891 and 2 755/s with the yield off.
"""

from __future__ import annotations

import asyncio
import time

ENTER = 0.85  # share of one core at which the process counts as saturated
LEAVE = 0.65  # ... and below which it no longer does (hysteresis)
WAIT_ENTER = 0.10  # share of wall time spent waiting for a CPU that counts as contention
WAIT_LEAVE = 0.05
INGEST_QUIET = 0.5  # seconds without an ingest request after which nothing needs the CPU
SCHEDSTAT = "/proc/self/schedstat"


def _cpu_and_wait() -> tuple[float, float | None]:
    """Seconds on a CPU and waiting for one, of the main thread when Linux says."""
    try:
        with open(SCHEDSTAT) as fh:
            on_cpu, waiting = fh.read().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return time.process_time(), None


class LoadMonitor:
    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.saturated = False
        self.utilisation = 0.0
        self.waiting = 0.0
        # Requests the ingest route answered: it bumps this (an attribute, not a call, on
        # the hot path); the monitor only looks whether it moved.
        self.arrivals = 0

    async def run(self) -> None:
        wall = time.monotonic()
        cpu, wait = _cpu_and_wait()
        seen, ingest_at = self.arrivals, wall - INGEST_QUIET
        while True:
            await asyncio.sleep(self.interval)
            now_wall = time.monotonic()
            now_cpu, now_wait = _cpu_and_wait()
            elapsed = max(now_wall - wall, 1e-6)
            self.utilisation = (now_cpu - cpu) / elapsed
            self.waiting = 0.0 if now_wait is None or wait is None else (now_wait - wait) / elapsed
            wall, cpu, wait = now_wall, now_cpu, now_wait
            if self.arrivals != seen:
                seen, ingest_at = self.arrivals, now_wall
            if now_wall - ingest_at >= INGEST_QUIET:
                self.saturated = False
            elif self.saturated:
                self.saturated = self.utilisation >= LEAVE or self.waiting >= WAIT_LEAVE
            else:
                self.saturated = self.utilisation >= ENTER or self.waiting >= WAIT_ENTER


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
