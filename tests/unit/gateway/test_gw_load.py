"""Background delivery yields to ingest: saturation is detected from this process's CPU
time, and while saturated claims are limited to a trickle."""

from __future__ import annotations

import asyncio
import time

from gateway.delivery.load import LoadMonitor, Trickle


async def test_monitor_reports_a_busy_process_as_saturated_and_recovers() -> None:
    monitor = LoadMonitor(interval=0.05)
    task = asyncio.create_task(monitor.run())
    try:
        deadline = time.monotonic() + 5
        while not monitor.saturated:
            # Hold the CPU (and the loop) for most of each sampling interval, answering
            # ingest requests.
            monitor.arrivals += 1
            spin_until = time.perf_counter() + 0.04
            while time.perf_counter() < spin_until:
                pass
            await asyncio.sleep(0.002)
            assert time.monotonic() < deadline, "a spinning process never counted as saturated"
        deadline = time.monotonic() + 5
        while monitor.saturated:
            await asyncio.sleep(0.05)
            assert time.monotonic() < deadline, "an idle process stayed saturated"
        assert monitor.utilisation < 0.65
    finally:
        task.cancel()


async def test_a_busy_process_with_no_ingest_is_not_saturated() -> None:
    """Without ingest requests there is nothing to yield to: the CPU the process uses or
    waits for is the drain's own (or other programs'), and throttling it helps no one."""
    monitor = LoadMonitor(interval=0.02)
    task = asyncio.create_task(monitor.run())
    try:
        spun = 0
        while spun < 20:
            spin_until = time.perf_counter() + 0.018
            while time.perf_counter() < spin_until:
                pass
            await asyncio.sleep(0.002)
            spun += 1
            assert not monitor.saturated, "a process with no ingest counted as saturated"
        assert monitor.utilisation > 0.0
    finally:
        task.cancel()


def test_trickle_grants_at_most_its_rate_per_second() -> None:
    trickle = Trickle(rate=100)
    assert trickle.take(256) == 100  # a full second of burst
    assert trickle.take(256) == 0
    trickle._at -= 0.5  # half a second later
    assert trickle.take(256) == 50


class _Source:
    """Just enough of StoreSource for WorkerHost.handle("claim")."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    async def claim_due(
        self, now: float, limit: int, lease: object, skip_hosts: object
    ) -> list[object]:
        self.limits.append(limit)
        return []

    async def event_infos(self, event_ids: list[str]) -> list[object]:
        return []


async def test_claims_shrink_to_the_trickle_while_ingest_saturates(tmp_path: object) -> None:
    from harness import make_settings

    from gateway.delivery.host import WorkerHost

    settings = make_settings(tmp_path, delivery={"workers": 1, "min_rate_under_load": 10})  # type: ignore[arg-type]
    source = _Source()
    host = WorkerHost(settings, source)  # type: ignore[arg-type]
    assert await host.handle(
        "claim", [time.time(), 256, {"token": "t", "until": time.time() + 60}, []]
    ) == [[], []]
    host.load.saturated = True
    await host.handle("claim", [time.time(), 256, {"token": "t", "until": time.time() + 60}, []])
    await host.handle("claim", [time.time(), 256, {"token": "t", "until": time.time() + 60}, []])
    assert source.limits == [256, 10]  # the second saturated claim found the bucket empty
