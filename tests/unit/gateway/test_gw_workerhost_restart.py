"""A restarted delivery worker reads its config first; its restart backoff resets after a
healthy run (issue 11, item 3)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import orjson
import pytest

from gateway.delivery.host import WorkerHost, _Worker
from gateway.delivery.restarts import RestartBackoff


@dataclasses.dataclass(frozen=True)
class _Settings:
    name: str = "test"


class _Stdin:
    def __init__(self) -> None:
        self.data = b""

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.data += data


class _Proc:
    def __init__(self) -> None:
        self.stdin = _Stdin()

    def lines(self) -> list[Any]:
        return [orjson.loads(line) for line in self.stdin.data.splitlines()]


class _Host:
    settings = _Settings()


async def test_a_wake_queued_for_the_dead_process_never_reaches_its_successor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs: list[_Proc] = []

    async def spawn(*args: Any, **kwargs: Any) -> _Proc:
        procs.append(_Proc())
        return procs[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spawn)
    worker = _Worker(_Host(), 0)  # type: ignore[arg-type]
    await worker.spawn()
    for _ in range(3):
        await asyncio.sleep(0)
    # The old process died; a coalesced wake is queued for it, then the restart happens
    # before the buffer flushes (the race seen under load).
    worker.send([0, "wake"])
    await worker.spawn()
    for _ in range(3):
        await asyncio.sleep(0)
    new = procs[1].lines()
    assert new[0][:2] == [0, "config"], new
    assert [0, "wake"] not in new
    assert procs[0].lines()[-1] == [0, "wake"]


async def test_restart_backoff_doubles_and_resets_after_a_healthy_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    runs = [1.0, 1.0, 1.0, 120.0, 1.0]
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    class FakeWorker:
        async def serve(self) -> int:
            if not runs:
                host._stopping = True
                return 0
            clock[0] += runs.pop(0)
            return -9

        async def spawn(self) -> None:
            return None

    host = WorkerHost.__new__(WorkerHost)
    host._stopping = False
    host._restart_max = 30.0
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(asyncio, "sleep", sleep)
    await host._supervise(FakeWorker())  # type: ignore[arg-type]
    assert delays == [0.5, 1.0, 2.0, 0.5, 1.0]


def test_the_restart_wait_doubles_to_its_cap_and_resets_after_a_healthy_run() -> None:
    backoff = RestartBackoff(maximum=3.0)
    assert [backoff.after(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.after(60.0) == 0.5
    assert backoff.after(0.1) == 1.0
