"""Delivery worker processes, seen from the server: spawn, feed, supervise.

Sending a webhook costs far more CPU than accepting one, so `serve` sends from child
processes running at a lower CPU priority (`delivery.worker_nice`): under a burst the
kernel gives the ingest process the CPU, deliveries wait durably in the store, and they
drain as soon as there is room. A worker holds no database connection of its own: it asks
this process (over its stdin/stdout, `gateway.delivery.pipe`) to claim, look up and record
deliveries, so the store keeps a single writer and SQLite never has two processes
contending for its write lock. A worker that dies is restarted; its leases run out and its
deliveries are claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from actions import Attempt, Lease, needs_event
from gateway.config import Settings
from gateway.delivery import pipe as wire
from gateway.delivery.load import LoadMonitor, Trickle
from gateway.delivery.restarts import RestartBackoff
from gateway.delivery.wiring import StoreSource

log = logging.getLogger("hookgate.workers")

STOP_TIMEOUT = 10.0


class _Worker:
    """One child process and the tasks serving its requests."""

    def __init__(self, host: WorkerHost, number: int) -> None:
        self.host = host
        self.number = number
        self.proc: asyncio.subprocess.Process | None = None
        self._out = wire.LineBuffer(lambda data: None)
        self.tasks: set[asyncio.Task[None]] = set()

    async def spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.delivery.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,
            start_new_session=True,  # Ctrl-C reaches the server only; it stops its workers
        )
        # Each process gets its own buffer bound to its own stdin: whatever the dead one's
        # buffer still holds (a wake, an answer to one of its requests) goes nowhere, and
        # the new process reads its config first.
        self._out = wire.LineBuffer(partial(_write, self.proc))
        self.send([0, "config", dataclasses.asdict(self.host.settings)])

    def send(self, message: list[Any]) -> None:
        if self.proc is not None:
            self._out.send(message)

    def flush(self) -> None:
        self._out.flush()

    async def serve(self) -> int:
        """Answer the worker's requests until it exits; returns its exit code."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        out = self._out
        while True:
            line = await stdout.readline()
            if not line:
                break
            task = asyncio.create_task(self.answer(wire.loads(line), out))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await self.proc.wait()

    async def answer(self, request: list[Any], out: wire.LineBuffer) -> None:
        """Answer on the buffer of the process that asked (not a restarted successor).

        Within one lease: a request that takes longer (a store call that never returns) is
        answered with an error, logged with its name, so the worker drops the delivery it
        concerns instead of renewing its lease for ever without sending it."""
        request_id, op, *args = request
        bound = self.host.settings.delivery.lease_seconds
        deadline = asyncio.timeout(bound)
        try:
            async with deadline:
                result = await self.host.handle(op, args)
            out.send([request_id, True, result])
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                log.error(
                    "worker request not answered within one lease (%.0f s): the store did"
                    " not answer",
                    bound,
                    extra={"fields": {"op": op, "worker": self.number}},
                )
                exc = TimeoutError(f"{op} took longer than one lease ({bound:.0f} s)")
            else:
                log.warning("worker request %s failed: %s", op, exc)
            out.send([request_id, False, str(exc)])


class WorkerHost:
    def __init__(
        self,
        settings: Settings,
        source: StoreSource,
        *,
        observe: Callable[[Attempt, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self._observe = observe
        self.load = LoadMonitor()
        self._trickle = Trickle(settings.delivery.min_rate_under_load)
        self._yield = settings.delivery.yield_to_ingest
        self._workers = [_Worker(self, n) for n in range(settings.delivery.workers)]
        self._restart_max = settings.server.restart_backoff_max_seconds
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wake_pending = False

    async def start(self) -> None:
        if self._yield:
            self._supervisors.append(asyncio.create_task(self.load.run()))
        for worker in self._workers:
            await worker.spawn()
            self._supervisors.append(asyncio.create_task(self._supervise(worker)))

    async def _supervise(self, worker: _Worker) -> None:
        backoff = RestartBackoff(maximum=self._restart_max)
        while True:
            started = time.monotonic()
            code = await worker.serve()
            if self._stopping:
                return
            wait = backoff.after(time.monotonic() - started)
            log.error("delivery worker exited with %s; restarting in %.1f s", code, wait)
            await asyncio.sleep(wait)
            await worker.spawn()

    async def handle(self, op: str, args: list[Any]) -> Any:
        source = self.source
        if op == "has_due":
            return await source.has_due(args[0])
        if op == "claim":
            limit = args[1]
            if self._yield and self.load.saturated:
                limit = self._trickle.take(limit)
                if not limit:
                    return [[], []]
            # The events the claimed deliveries will need come along, in one store read,
            # instead of one request per delivery.
            deliveries = await source.claim_due(args[0], limit, Lease(**args[2]), args[3])
            wanted = {d.event_id for d in deliveries if needs_event(d)}
            events = await source.event_infos(list(wanted)) if wanted else []
            return [deliveries, events]
        if op == "finish":
            return await self._finish(*args)
        if op == "finishes":
            # Several attempts in one request: each its own fenced finish, all in flight
            # together (so the store group-commits them), each answered on its own.
            done = await asyncio.gather(
                *(self._finish(*one) for one in args[0]), return_exceptions=True
            )
            for failed in done:
                if isinstance(failed, BaseException):
                    log.warning("worker request finish failed: %s", failed)
            return [
                [False, str(one)] if isinstance(one, BaseException) else [True, one] for one in done
            ]
        if op == "renew":
            return await source.renew(args[0], args[1])
        if op == "release":
            await source.release(args[0])
            return None
        if op == "slot":
            return await source.take_delivery_slot(*args)
        if op == "defer":
            return await source.defer(*args)
        if op == "hold":
            return await source.hold(args[0])
        if op == "event":
            return await source.event_info(args[0])
        if op == "target":
            return await source.target(args[0])
        if op == "outcome":
            await source.target_outcome(*args)
            return None
        raise ValueError(f"unknown worker request {op!r}")

    async def _finish(
        self, delivery_id: str, data: dict[str, Any], status: Any, next_at: Any, token: str
    ) -> bool:
        attempt = Attempt.from_data(data)
        recorded = await self.source.finish_attempt(delivery_id, attempt, status, next_at, token)
        # A refused finish (the lease was lost) is not counted: the holder's one is.
        if recorded and self._observe is not None:
            self._observe(attempt, status)
        return recorded

    def wake(self) -> None:
        """New deliveries were committed: have the workers claim now, not at their next
        poll. Coalesced to one message per loop iteration however many requests commit."""
        if self._wake_pending or (self._yield and self.load.saturated):
            return
        self._wake_pending = True
        asyncio.get_running_loop().call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_pending = False
        for worker in self._workers:
            worker.send([0, "wake"])

    def reset_rule_failures(self) -> None:
        for worker in self._workers:
            worker.send([0, "reset"])

    async def stop(self) -> None:
        """Ask every worker to stop (they hand unsent deliveries back through us), then
        wait; a worker that does not exit in time is killed."""
        self._stopping = True
        for worker in self._workers:
            worker.send([0, "stop"])
        for worker in self._workers:
            proc = worker.proc
            if proc is None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._supervisors:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker in self._workers:
            for task in list(worker.tasks):
                with contextlib.suppress(Exception):
                    await task
            worker.flush()
            if worker.proc is not None and worker.proc.stdin is not None:
                worker.proc.stdin.close()


def _write(proc: asyncio.subprocess.Process, data: bytes) -> None:
    if proc.stdin is None or proc.stdin.is_closing():
        return
    proc.stdin.write(data)
