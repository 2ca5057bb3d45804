"""The delivery worker process (`gateway.delivery.worker`), driven through real pipes.

Most tests start `python -m gateway.delivery.worker` as `WorkerHost` does (stdin/stdout are
OS pipes) and play the server's half of `gateway.delivery.pipe` themselves: the config
first, then answers to the worker's requests and the `wake`, `reset` and `stop`
notifications. The worker sends to a real loopback HTTP sink. `RemoteSource` (the worker's
proxy of the store) is also run in-process over a socketpair against the real host's
request handler and a `MemoryStore`.

The dispatcher is configured to poll once an hour and renew leases every 1000 s, so every
request a test sees was caused by what the test sent (a test that waits for a request a
broken worker never sends fails at the per-read deadline, never by timing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import orjson
import pytest
from aiohttp import web

from actions import Attempt, Delivery, EventInfo, Lease, TargetInfo, envelope
from gateway.config import Settings
from gateway.delivery import pipe as wire
from gateway.delivery import worker as worker_module
from gateway.delivery.host import WorkerHost, _Worker
from gateway.delivery.wiring import StoreSource
from gateway.delivery.worker import RemoteSource, StoreViews
from gateway.models import App, Event, WebhookTarget
from gateway.store.memory import MemoryStore

READ_DEADLINE = 30.0  # a bound on each read, so a broken worker fails the test, not hangs it


@dataclass
class Received:
    path: str
    body: bytes


@dataclass
class Sink:
    """A real HTTP server on a free loopback port. Paths in `hold` answer only when
    `release` is set (a receiver that hangs)."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, await request.read()))
        self.arrived.set()
        if request.path in self.hold:
            await self.release.wait()
        return web.Response(status=self.status.get(request.path, 200), text="ok")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    received = Sink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", received.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    received.port = runner.addresses[0][1]
    yield received
    received.release.set()
    await runner.cleanup()


def _settings(tmp_path: Path, **delivery: Any) -> Settings:
    values = {
        "allow_private_targets": True,
        "poll_seconds": 3600,  # only a wake makes the worker claim
        "lease_seconds": 3000,  # no renewal within a test
        "worker_nice": 0,
        "yield_to_ingest": False,
        "workers": 1,
        **delivery,
    }
    settings: Settings = harness.make_settings(tmp_path, delivery=values)
    return settings


class Server:
    """The server's half of the pipe, played by the test, with a real worker process on
    the other end."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def send(self, message: list[Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(wire.dumps(message))

    def config(self, settings: Settings) -> None:
        self.send([0, "config", dataclasses.asdict(settings)])

    async def request(self) -> list[Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), READ_DEADLINE)
        assert line, f"the worker closed its stdout; its log:\n{self.stderr()}"
        message: list[Any] = wire.loads(line)
        return message

    async def expect(self, op: str) -> list[Any]:
        """The worker's next request, which must be `op`: `[id, op, *args]`."""
        message = await self.request()
        assert message[1] == op, message
        return message

    def answer(self, request: list[Any], result: Any, ok: bool = True) -> None:
        self.send([request[0], ok, result])

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), READ_DEADLINE)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Start worker processes as `WorkerHost` does; kill any still running afterwards."""
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> Server:
        log = tmp_path / f"worker-{len(procs)}.log"
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.delivery.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=2**26,
                start_new_session=True,
            )
        procs.append(proc)
        return Server(proc, log)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _delivery(n: int, url: str, **fields: Any) -> Delivery:
    base = {"id": f"dlv_{n:04d}", "event_id": "evt_0001", "action_type": "webhook"}
    return Delivery(**{**base, "url": url, "created_at": time.time(), **fields})


EVENT = EventInfo("evt_0001", "job.done", "crm", 1_700_000_000.0, b'{"job": {"id": 7}}')


def _claimed(*deliveries: Delivery, events: tuple[EventInfo, ...] = (EVENT,)) -> list[Any]:
    """The host's answer to `claim`: the deliveries and the events they need."""
    return [[dataclasses.asdict(d) for d in deliveries], [dataclasses.asdict(e) for e in events]]


async def _claim(server: Server, *deliveries: Delivery) -> Lease:
    """Wake the worker, let it see work due and hand it `deliveries`; the lease it claimed
    them under."""
    server.send([0, "wake"])
    has_due = await server.expect("has_due")
    server.answer(has_due, True)
    claim = await server.expect("claim")
    _, _, _now, limit, lease, skip_hosts = claim
    assert limit >= len(deliveries) and skip_hosts == []
    server.answer(claim, _claimed(*deliveries))
    return Lease(**lease)


# The handshake and the lifecycle


async def test_a_worker_reads_its_config_then_asks_for_work_when_woken(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    server.send([0, "wake"])

    has_due = await server.expect("has_due")
    assert isinstance(has_due[0], int) and has_due[0] >= 1
    assert isinstance(has_due[2], float)  # "now", in epoch seconds
    server.answer(has_due, False)  # nothing due: no claim follows

    server.send([0, "wake"])
    again = await server.expect("has_due")  # the next request is the next wake's read
    assert again[0] > has_due[0]  # request ids are never reused
    server.answer(again, False)
    server.send([0, "stop"])
    assert await server.exit_code() == 0


async def test_a_claimed_delivery_is_sent_and_finished_under_its_lease(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    delivery = _delivery(1, sink.url("/crm"))

    lease = await _claim(server, delivery)

    # The event came with the claim: the worker asks nothing more before it reports.
    finish = await server.expect("finish")
    _, _, delivery_id, attempt, status, next_at, token = finish
    assert (delivery_id, status, next_at, token) == (delivery.id, "succeeded", None, lease.token)
    assert Attempt.from_data(attempt).status_code == 200
    server.answer(finish, True)
    (request,) = sink.received
    assert request.body == envelope(EVENT)  # bytes survive the pipe both ways

    server.send([0, "stop"])
    assert await server.exit_code() == 0


async def test_a_delivery_without_its_event_asks_the_server_for_it(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    delivery = _delivery(1, sink.url("/fwd"), action_type="forward")
    server.send([0, "wake"])
    server.answer(await server.expect("has_due"), True)
    server.answer(await server.expect("claim"), _claimed(delivery, events=()))

    event = await server.expect("event")
    assert event[2:] == [delivery.event_id]
    server.answer(event, dataclasses.asdict(EVENT))
    finish = await server.expect("finish")
    assert finish[4] == "succeeded"
    server.answer(finish, True)
    assert orjson.loads(sink.received[0].body) == {"eventType": "job.done", "job": {"id": 7}}
    server.send([0, "stop"])
    assert await server.exit_code() == 0


async def test_a_target_delivery_asks_for_its_target_and_reports_its_outcome(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    sink.status["/gone"] = 410
    delivery = _delivery(1, sink.url("/gone"), target_id="wht_1", retry=(1.0,))

    lease = await _claim(server, delivery)
    target = await server.expect("target")
    assert target[2:] == ["wht_1"]
    server.answer(target, dataclasses.asdict(TargetInfo("whsec_dGVzdA==", True, 5)))
    finish = await server.expect("finish")
    assert (finish[4], finish[5], finish[6]) == ("failed", None, lease.token)  # 410: no retry
    server.answer(finish, True)
    outcome = await server.expect("outcome")
    assert outcome[2:] == ["wht_1", False, 5, True]  # ok, disable_after, gone
    server.answer(outcome, None)
    server.send([0, "stop"])
    assert await server.exit_code() == 0


async def test_a_server_refusal_is_survived_and_the_next_wake_claims_again(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    server.send([0, "wake"])
    server.answer(await server.expect("has_due"), "store is unavailable", ok=False)

    lease = await _claim(server, _delivery(1, sink.url("/crm")))

    finish = await server.expect("finish")
    assert finish[6] == lease.token
    server.answer(finish, True)
    assert "claiming deliveries failed: server refused the request: store is unavailable" in (
        server.stderr()
    )
    server.send([0, "stop"])
    assert await server.exit_code() == 0


async def test_reset_brings_back_a_rule_action_disabled_after_failures(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    sink.status["/flaky"] = 500
    rule = {"rule_id": "forward-crm", "disable_after": 1}

    await _claim(server, _delivery(1, sink.url("/flaky"), **rule))
    first = await server.expect("finish")
    assert first[4] == "failed"
    server.answer(first, True)

    await _claim(server, _delivery(2, sink.url("/flaky"), **rule))
    second = await server.expect("finish")
    assert second[4] == "skipped"
    error = Attempt.from_data(second[3]).error
    assert error is not None and "disabled after consecutive failures" in error
    server.answer(second, True)
    assert len(sink.received) == 1  # the skipped one was not sent

    server.send([0, "reset"])
    sink.status["/flaky"] = 200
    await _claim(server, _delivery(3, sink.url("/flaky"), **rule))
    third = await server.expect("finish")
    assert third[4] == "succeeded"
    server.answer(third, True)
    assert len(sink.received) == 2
    server.send([0, "stop"])
    assert await server.exit_code() == 0


async def test_stop_hands_an_unfinished_delivery_back_before_the_worker_exits(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    """Stopping needs the pipe (the release is a request): the worker keeps reading after
    `stop` until its release is answered, then exits cleanly."""
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    sink.hold.add("/slow")
    delivery = _delivery(1, sink.url("/slow"))
    lease = await _claim(server, delivery)
    await asyncio.wait_for(sink.arrived.wait(), READ_DEADLINE)  # sending, not answered

    server.send([0, "stop"])

    release = await server.expect("release")
    assert release[2:] == [{delivery.id: lease.token}]
    assert server.proc.returncode is None  # waiting for the answer
    server.answer(release, None)
    assert await server.exit_code() == 0


async def test_a_worker_whose_server_is_gone_exits(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    server.send([0, "wake"])
    await server.expect("has_due")  # left unanswered: the server died mid-request

    assert server.proc.stdin is not None
    server.proc.stdin.close()

    assert await server.exit_code() == 0
    assert "server is gone; worker exiting" in server.stderr()


async def test_a_worker_whose_server_dies_while_it_holds_a_delivery_still_exits(
    tmp_path: Path, spawn: Callable[[], Any], sink: Sink
) -> None:
    """Handing the delivery back needs the server, which is gone: the release fails at
    once instead of waiting for an answer that never comes (its lease runs out instead)."""
    server: Server = await spawn()
    server.config(_settings(tmp_path))
    sink.hold.add("/slow")
    await _claim(server, _delivery(1, sink.url("/slow")))
    await asyncio.wait_for(sink.arrived.wait(), READ_DEADLINE)

    assert server.proc.stdin is not None
    server.proc.stdin.close()

    assert await server.exit_code() == 0
    assert "server is gone; worker exiting" in server.stderr()


async def test_a_worker_whose_stdin_closes_before_its_config_exits_quietly(
    spawn: Callable[[], Any],
) -> None:
    server: Server = await spawn()
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    assert await server.exit_code() == 0
    assert server.proc.stdout is not None
    assert await server.proc.stdout.read() == b""


async def test_a_stale_answer_before_the_config_is_refused(spawn: Callable[[], Any]) -> None:
    """A line meant for the dead predecessor (an answer to its request) must not be taken
    for settings."""
    server: Server = await spawn()
    server.send([7, True, None])
    assert await server.exit_code() != 0
    assert server.proc.stdout is not None
    assert await server.proc.stdout.read() == b""  # it asked nothing
    assert "expected the server's config first, got True" in server.stderr()


@pytest.mark.parametrize("name", ["wake", "stop", "reset"])
async def test_a_stale_notification_before_the_config_is_refused(
    spawn: Callable[[], Any], name: str
) -> None:
    server: Server = await spawn()
    server.send([0, name])
    assert await server.exit_code() != 0
    assert server.proc.stdout is not None
    assert await server.proc.stdout.read() == b""


async def test_a_stale_notification_before_the_config_is_named_in_the_error(
    spawn: Callable[[], Any],
) -> None:
    server: Server = await spawn()
    server.send([0, "wake"])
    assert await server.exit_code() != 0
    assert "expected the server's config first, got 'wake'" in server.stderr()


async def test_the_real_host_feeds_a_real_worker_from_the_store(tmp_path: Path, sink: Sink) -> None:
    """`WorkerHost` spawns the worker, sends its config, wakes it for committed work,
    answers its store calls from a `MemoryStore`, and stops it cleanly."""
    store = MemoryStore()
    await store.open()
    source = StoreSource(store, targets=dict, app_name=lambda app_id: "crm")
    observed: list[tuple[int | None, str]] = []
    host = WorkerHost(
        _settings(tmp_path), source, observe=lambda a, s: observed.append((a.status_code, s))
    )
    await host.start()
    try:
        now = time.time()
        delivery = Delivery(
            id="dlv_host",
            event_id="evt_host",
            action_type="forward",
            url=sink.url("/host"),
            created_at=now,
            next_attempt_at=now,
        )
        await store.add_event(Event("evt_host", "app_crm", "t", now, b'{"k": 1}'), [delivery])
        host.wake()
        await asyncio.wait_for(sink.arrived.wait(), READ_DEADLINE)
        # Sent; the worker's finish crosses the pipe after the answer is in: poll for it.
        for _ in range(int(READ_DEADLINE / 0.02)):
            stored = await store.get_delivery("dlv_host")
            if stored is None or stored.status != "pending":
                break
            await asyncio.sleep(0.02)
    finally:
        await host.stop()
    assert stored is not None and stored.status == "succeeded"
    assert observed == [(200, "succeeded")]
    assert orjson.loads(sink.received[0].body) == {"eventType": "t", "k": 1}
    proc = host._workers[0].proc
    assert proc is not None and proc.returncode == 0


# RemoteSource, the worker's proxy of the store, over a socketpair


class Pipe:
    """A socketpair between a `RemoteSource` and the real host's request handler (over a
    `WorkerHost` with a `MemoryStore`); it counts the requests that crossed."""

    source: RemoteSource  # set by `open`

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.requests: list[list[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self, tmp_path: Path) -> None:
        await self.store.open()
        host = WorkerHost(
            _settings(tmp_path),
            StoreSource(
                self.store,
                targets=lambda: {},
                app_name=lambda app_id: {"app_crm": "crm"}.get(app_id, app_id),
            ),
        )
        worker_end, server_end = socket.socketpair()
        worker_reader, worker_writer = await asyncio.open_connection(sock=worker_end)
        server_reader, server_writer = await asyncio.open_connection(sock=server_end)
        self._writers += [worker_writer, server_writer]
        source = self.source = RemoteSource(worker_writer)
        self._tasks.append(
            asyncio.create_task(self._serve(_Worker(host, 0), server_reader, server_writer))
        )
        self._tasks.append(asyncio.create_task(self._read_answers(source, worker_reader)))

    async def _serve(
        self, worker: _Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        out = wire.LineBuffer(writer.write)
        while line := await reader.readline():
            request = wire.loads(line)
            self.requests.append(request)
            await worker.answer(request, out)

    async def _read_answers(self, source: RemoteSource, reader: asyncio.StreamReader) -> None:
        """What `run_linked`'s loop does with answers."""
        while line := await reader.readline():
            message = wire.loads(line)
            source.answered(message[0], message[1], message[2])
        source.fail_all("server closed the pipe")

    def ops(self) -> list[str]:
        return [request[1] for request in self.requests]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in self._writers:
            writer.close()


@pytest.fixture
async def pipe(tmp_path: Path) -> AsyncIterator[Pipe]:
    opened = Pipe()
    await opened.open(tmp_path)
    yield opened
    await opened.close()


async def test_every_store_call_crosses_the_pipe_and_comes_back_typed(pipe: Pipe) -> None:
    source = pipe.source
    store = pipe.store
    now = time.time()
    body = bytes(range(256))
    delivery = Delivery(
        id="dlv_1",
        event_id="evt_1",
        action_type="webhook",
        url="http://127.0.0.1:9/in",
        body=body,
        retry=(5.0,),
        headers=(("X-Key", "k"),),
        created_at=now,
        next_attempt_at=now,
    )
    await store.add_event(Event("evt_1", "app_crm", "job.done", now, b'{"a": 1}'), [delivery])
    await store.create_target(
        WebhookTarget(id="wht_1", url="http://127.0.0.1:9/t", secret="whsec_eA==")
    )

    assert await source.has_due(now + 1) is True
    lease = Lease.new(now + 60)
    (claimed,) = await source.claim_due(now + 1, 10, lease)
    assert claimed == dataclasses.replace(delivery, body=body)  # bytes, tuples, all typed
    assert await source.has_due(now + 1) is False  # the store holds it under our lease
    assert await source.renew({"dlv_1": lease.token}, now + 120) == ["dlv_1"]
    assert await source.renew({"dlv_1": "someone-else"}, now + 120) == []
    attempt = Attempt(
        at=now,
        status_code=503,
        latency_ms=2.0,
        error="HTTP 503",
        response_excerpt="later",
        request_headers=(("content-type", "application/json"),),
    )
    assert await source.finish_attempt("dlv_1", attempt, "pending", now + 5, "stale-token") is False
    assert await source.finish_attempt("dlv_1", attempt, "pending", now + 5, lease.token) is True
    stored = await store.get_delivery("dlv_1")
    assert stored is not None and stored.attempts == (attempt,)
    assert await source.target("wht_1") == TargetInfo("whsec_eA==", True, 3)
    assert await source.target("wht_gone") is None
    await source.target_outcome("wht_1", False, 1, False)
    target = await store.get_target("wht_1")
    assert target is not None and target.status == "disabled"
    relet = Lease.new(now + 60)
    await source.claim_due(now + 10, 10, relet)
    await source.release({"dlv_1": relet.token})
    assert await source.has_due(now + 10) is True
    assert pipe.ops() == [
        "has_due",
        "claim",
        "has_due",
        "renew",
        "renew",
        "finish",
        "finish",
        "target",
        "target",
        "outcome",
        "claim",
        "release",
        "has_due",
    ]


async def test_attempts_finished_together_cross_the_pipe_as_one_fenced_request(
    pipe: Pipe,
) -> None:
    """Finishes within one window go as one `finishes` request; each is still fenced by its
    own lease token and answered on its own (a stale token is refused, the others kept)."""
    source = pipe.source
    now = time.time()
    deliveries = [
        Delivery(
            id=f"dlv_{n}",
            event_id="evt_1",
            action_type="webhook",
            url="http://127.0.0.1:9/in",
            next_attempt_at=now,
        )
        for n in (1, 2, 3)
    ]
    await pipe.store.add_event(Event("evt_1", "app_crm", "t", now, b"{}"), deliveries)
    lease = Lease.new(now + 60)
    assert len(await source.claim_due(now + 1, 10, lease)) == 3
    attempt = Attempt(at=now, status_code=200, latency_ms=1.0, error=None, response_excerpt="ok")
    answers = await asyncio.gather(
        source.finish_attempt("dlv_1", attempt, "succeeded", None, lease.token),
        source.finish_attempt("dlv_2", attempt, "succeeded", None, "stale-token"),
        source.finish_attempt("dlv_3", attempt, "succeeded", None, lease.token),
    )
    assert answers == [True, False, True]
    assert pipe.ops() == ["claim", "finishes"]
    statuses = [(await pipe.store.get_delivery(d.id)) for d in deliveries]
    assert [d.status if d else None for d in statuses] == ["succeeded", "pending", "succeeded"]
    assert [len(d.attempts) if d else None for d in statuses] == [1, 0, 1]


async def test_finishes_waiting_for_their_batch_fail_when_the_server_is_gone(
    pipe: Pipe,
) -> None:
    source = pipe.source
    attempt = Attempt(
        at=time.time(), status_code=200, latency_ms=1.0, error=None, response_excerpt=None
    )
    waiting = asyncio.gather(
        source.finish_attempt("dlv_1", attempt, "succeeded", None, "t"),
        source.finish_attempt("dlv_2", attempt, "succeeded", None, "t"),
        return_exceptions=True,
    )
    source.fail_all("server closed the pipe")
    assert [type(e) for e in await waiting] == [ConnectionError, ConnectionError]
    with pytest.raises(ConnectionError):
        await source.finish_attempt("dlv_3", attempt, "succeeded", None, "t")


async def test_events_that_came_with_a_claim_are_not_asked_for_again(pipe: Pipe) -> None:
    source = pipe.source
    now = time.time()
    forward = Delivery(
        id="dlv_1", event_id="evt_1", action_type="forward", url="http://h/", next_attempt_at=now
    )
    await pipe.store.add_event(Event("evt_1", "app_crm", "job.done", now, b'{"a": 1}'), [forward])
    await pipe.store.add_event(Event("evt_2", "app_other", None, now, b"[]"), [])

    await source.claim_due(now + 1, 10, Lease.new(now + 60))
    cached = await source.event_info("evt_1")
    assert cached == EventInfo("evt_1", "job.done", "crm", now, b'{"a": 1}')
    assert pipe.ops() == ["claim"]  # answered from what the claim brought
    other = await source.event_info("evt_2")
    assert other == EventInfo("evt_2", None, "app_other", now, b"[]")
    assert await source.event_info("evt_missing") is None
    assert pipe.ops() == ["claim", "event", "event"]


async def test_the_event_cache_is_bounded(pipe: Pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "EVENT_CACHE", 1)
    source = pipe.source
    now = time.time()
    for n in (1, 2, 3):
        await pipe.store.add_event(
            Event(f"evt_{n}", "app_crm", "t", now, b"{}"),
            [
                Delivery(
                    id=f"dlv_{n}",
                    event_id=f"evt_{n}",
                    action_type="forward",
                    url="http://h/",
                    next_attempt_at=now,
                )
            ],
        )
        await source.claim_due(now + 1, 1, Lease.new(now + 60))
    assert len(source._events) <= 2  # cleared once past the bound, not grown without end


async def test_a_refused_request_raises_with_the_servers_reason(pipe: Pipe) -> None:
    source = pipe.source
    with pytest.raises(
        RuntimeError, match="server refused the request: unknown worker request 'bogus'"
    ):
        await source._call("bogus", 1)
    assert await source.has_due(time.time()) is False  # the pipe still works after a refusal


class Written:
    """The write end of a pipe as `RemoteSource` sees it (`write(bytes)`), kept in memory."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def lines(self) -> list[Any]:
        return [wire.loads(line) for line in self.data.splitlines()]


async def _turns(done: Callable[[], bool]) -> None:
    """Let the loop turn until `done` (the buffered line went out: one or two turns)."""
    for _ in range(100):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("nothing was written")


async def test_answers_reach_their_own_request_in_any_order() -> None:
    written = Written()
    source = RemoteSource(written)
    first = asyncio.create_task(source._call("has_due", 1.0))
    second = asyncio.create_task(source._call("event", "evt_1"))
    await _turns(lambda: len(written.lines()) == 2)
    assert written.lines() == [[1, "has_due", 1.0], [2, "event", "evt_1"]]

    source.answered(2, True, "second")
    source.answered(99, True, "nobody asked")  # unknown ids are dropped
    source.answered(1, True, "first")
    source.answered(1, True, "again")  # a second answer changes nothing
    assert await first == "first"
    assert await second == "second"


async def test_a_closed_pipe_fails_what_is_pending_and_refuses_what_follows() -> None:
    written = Written()
    source = RemoteSource(written)
    pending = asyncio.create_task(source.has_due(1.0))
    await _turns(lambda: bool(written.data))

    source.fail_all("server closed the pipe")

    with pytest.raises(ConnectionError, match="server closed the pipe"):
        await pending
    sent = written.data
    with pytest.raises(ConnectionError, match="server closed the pipe"):
        await source.release({"dlv_1": "t"})
    await asyncio.sleep(0)
    assert written.data == sent  # nothing more was written


async def test_a_request_the_server_never_answers_fails_loudly_after_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unanswered request must not hold its delivery for ever (the renewer would keep
    its lease alive and nobody would send it): it raises, named, and a late answer is
    dropped."""
    written = Written()
    source = RemoteSource(written, timeout=0.05)
    with pytest.raises(TimeoutError, match="did not answer 'target' within"):
        await source.target("wht_1")
    finish = asyncio.create_task(
        source.finish_attempt("dlv_1", Attempt(1.0, 200, 1.0, None, None), "succeeded", None, "t")
    )
    with pytest.raises(TimeoutError, match="did not answer 'finish' within"):
        await finish
    assert [line[1] for line in written.lines()] == ["target", "finish"]
    assert [r.fields["op"] for r in caplog.records if hasattr(r, "fields")] == ["target", "finish"]  # type: ignore[attr-defined]
    source.answered(1, True, None)  # too late: nobody waits for it any more
    source.answered(2, True, True)


async def test_the_host_answers_a_request_its_store_never_finishes_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Hung(StoreSource):
        async def target(self, target_id: str) -> TargetInfo | None:
            await asyncio.Event().wait()
            raise AssertionError("never")

    store = MemoryStore()
    await store.open()
    host = WorkerHost(
        _settings(tmp_path, lease_seconds=0.05),
        Hung(store, targets=lambda: {}, app_name=lambda app_id: app_id),
    )
    written = Written()
    out = wire.LineBuffer(written.write)
    await _Worker(host, 0).answer([7, "target", "wht_1"], out)
    await _turns(lambda: bool(written.data))
    assert written.lines() == [[7, False, "target took longer than one lease (0 s)"]]
    logged = [r for r in caplog.records if r.getMessage().startswith("worker request not answered")]
    assert [r.fields["op"] for r in logged] == ["target"]  # type: ignore[attr-defined]


# StoreViews, the standalone worker's view of targets and app names


async def test_store_views_reload_only_when_the_store_says_something_changed() -> None:
    store = MemoryStore()
    await store.open()
    await store.create_app(App("app_1", "crm", "hash"))
    views = StoreViews(store)
    await views.refresh(force=True)
    assert views.app_name("app_1") == "crm"
    assert views.app_name("app_unknown") == "app_unknown"

    await store.create_target(WebhookTarget(id="wht_1", url="http://h/", secret="whsec_eA=="))
    await views.refresh()
    assert list(views.targets) == ["wht_1"]

    # A change the versions do not show (none here) is not picked up without force.
    views.targets = {}
    await views.refresh()
    assert views.targets == {}
    await views.refresh(force=True)
    assert list(views.targets) == ["wht_1"]
