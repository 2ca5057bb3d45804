"""The dispatcher against an in-memory `DeliverySource` and real HTTP sinks on loopback.

Each sink is its own host (its own port), counts the requests in flight at it and can hold
them until the test opens its gate, so concurrency is measured where it matters: at the
receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import (
    AddressPolicy,
    Attempt,
    ClientSettings,
    Delivery,
    DeliveryClient,
    DeliveryStatus,
    Dispatcher,
    DispatchSettings,
    EventInfo,
    Lease,
    RateLimit,
    TargetInfo,
    delivery_host,
    delivery_id,
)
from gateway.limits.buckets import SlotBuckets

Serve = Callable[[Any], contextlib.AbstractAsyncContextManager[str]]
EVENT = EventInfo("evt_1", "job_completed", "acme", 1_700_000_000.0, b'{"type":"job_completed"}')


class MemorySource:
    """`DeliverySource` over dicts, with the leasing rules of the real stores (fenced by
    lease token, full hosts skipped)."""

    def __init__(self, targets: dict[str, TargetInfo] | None = None) -> None:
        self.rows: dict[str, Delivery] = {}
        self.leases: dict[str, Lease] = {}
        self.attempts: dict[str, list[Attempt]] = {}
        self.released: list[str] = []
        self.refused: list[str] = []
        self.skipped_hosts: list[list[str]] = []
        self.event_lookups: list[str] = []
        self.events: dict[str, EventInfo] = {EVENT.id: EVENT}
        self.targets = targets or {}
        self.outcomes: list[tuple[str, bool, bool]] = []
        self.deferred: list[str] = []
        self.slots = SlotBuckets()
        self.granted: list[float] = []  # the `now` of every slot the bucket granted

    def add(self, delivery: Delivery, lease: Lease | None = None) -> Delivery:
        self.rows[delivery.id] = delivery
        if lease is not None:
            self.leases[delivery.id] = lease
        return delivery

    def _due(self, now: float, skip: Collection[str] = ()) -> list[Delivery]:
        return [
            d
            for d in self.rows.values()
            if d.status == "pending"
            and d.next_attempt_at is not None
            and d.next_attempt_at <= now
            and (d.id not in self.leases or self.leases[d.id].until <= now)
            and delivery_host(d.url) not in skip
        ]

    def _holds(self, delivery_id: str, token: str) -> bool:
        lease = self.leases.get(delivery_id)
        return lease is not None and lease.token == token

    async def has_due(self, now: float) -> bool:
        return bool(self._due(now))

    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        self.skipped_hosts.append(sorted(skip_hosts))
        due = self._due(now, skip_hosts)[:limit]
        for d in due:
            self.leases[d.id] = lease
        return due

    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        renewed = [i for i, token in held.items() if self._holds(i, token)]
        for i in renewed:
            self.leases[i] = Lease(held[i], lease_until)
        return renewed

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
        if not self._holds(delivery_id, lease_token):
            self.refused.append(delivery_id)
            return False
        row = self.rows[delivery_id]
        self.rows[delivery_id] = dataclasses.replace(
            row,
            status=status,
            next_attempt_at=next_attempt_at,
            attempt_count=row.attempt_count + 1,
        )
        self.attempts.setdefault(delivery_id, []).append(attempt)
        self.leases.pop(delivery_id, None)
        return True

    async def release(self, held: Mapping[str, str]) -> None:
        for i, token in held.items():
            if self._holds(i, token):
                self.released.append(i)
                del self.leases[i]

    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        if not self._holds(delivery_id, lease_token):
            return False
        self.rows[delivery_id] = dataclasses.replace(self.rows[delivery_id], next_attempt_at=until)
        del self.leases[delivery_id]
        self.deferred.append(delivery_id)
        return True

    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        wait = self.slots.take(key, rate, burst, now)
        if wait <= 0:
            self.granted.append(now)
        return wait

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        kept = [i for i, token in held.items() if self._holds(i, token)]
        for i in kept:
            self.rows[i] = dataclasses.replace(self.rows[i], status="held", next_attempt_at=None)
            del self.leases[i]
        return kept

    async def event_info(self, event_id: str) -> EventInfo | None:
        self.event_lookups.append(event_id)
        return self.events.get(event_id)

    async def target(self, target_id: str) -> TargetInfo | None:
        return self.targets.get(target_id)

    async def target_outcome(
        self, target_id: str, ok: bool, disable_after: int | None, gone: bool
    ) -> None:
        self.outcomes.append((target_id, ok, gone))


class Meter:
    """Requests in flight across every sink, and the most seen at once."""

    def __init__(self) -> None:
        self.inflight = 0
        self.peak = 0

    def enter(self) -> None:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)

    def leave(self) -> None:
        self.inflight -= 1


class GatedSink:
    """A receiver that holds every request until `gate` opens (when `blocking`)."""

    def __init__(self, meter: Meter, *, blocking: bool = False, status: int = 200) -> None:
        self.meter = meter
        self.local = Meter()
        self.blocking = blocking
        self.status = status
        self.gate = asyncio.Event()
        self.received: list[tuple[str, bytes]] = []
        self.base_url = ""

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((request.headers.get("x-delivery", ""), body))
        self.meter.enter()
        self.local.enter()
        try:
            if self.blocking:
                await self.gate.wait()
            return Response(b"ok", status_code=self.status)
        finally:
            self.local.leave()
            self.meter.leave()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["POST"])])


@pytest.fixture
def meter() -> Meter:
    return Meter()


@pytest.fixture
async def sinks(serve_app: Serve, meter: Meter) -> AsyncIterator[Callable[..., Any]]:
    """`await make(blocking=..., status=...)` starts one more sink (one more host)."""
    async with contextlib.AsyncExitStack() as stack:
        made: list[GatedSink] = []

        async def make(**kwargs: Any) -> GatedSink:
            sink = GatedSink(meter, **kwargs)
            sink.base_url = await stack.enter_async_context(serve_app(sink.app()))
            made.append(sink)
            return sink

        try:
            yield make
        finally:
            for sink in made:  # let held requests finish so the servers can stop
                sink.gate.set()


@pytest.fixture
async def client() -> AsyncIterator[DeliveryClient]:
    http = DeliveryClient(
        ClientSettings(
            concurrency=16,
            per_host_concurrency=4,
            policy=AddressPolicy(allow_private=True),
        )
    )
    try:
        yield http
    finally:
        await http.aclose()


def settings(**overrides: Any) -> DispatchSettings:
    base: dict[str, Any] = {
        "timeout_seconds": 10.0,
        "concurrency": 16,
        "per_host_concurrency": 4,
        "poll_seconds": 0.05,
        "lease_seconds": 30.0,
        "user_agent": "hookgate/test",
    }
    return DispatchSettings(**(base | overrides))


@contextlib.asynccontextmanager
async def running(
    source: MemorySource,
    client: DeliveryClient,
    dispatch: DispatchSettings,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(source, client, dispatch, env=env or {})
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


def make(url: str, n: int = 0, **fields: Any) -> Delivery:
    now = time.time()
    values: dict[str, Any] = {
        "id": delivery_id(now),
        "event_id": EVENT.id,
        "action_type": "webhook",
        "url": url,
        "body": b'{"n":%d}' % n,
        "headers": (("X-Delivery", str(n)),),
        "created_at": now,
        "next_attempt_at": now,
    }
    return Delivery(**(values | fields))


def submit(
    source: MemorySource, dispatcher: Dispatcher, deliveries: Iterable[Delivery]
) -> list[Delivery]:
    """As ingest does: commit leased to this process, then hand over."""
    lease = Lease.new(time.time() + 30)
    rows = [source.add(d, lease) for d in deliveries]
    dispatcher.submit(rows, None, lease)
    return rows


async def eventually(predicate: Callable[[], Any], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def stays(predicate: Callable[[], bool], seconds: float = 0.3) -> None:
    """`predicate` holds throughout (a bound that must not be exceeded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate()
        await asyncio.sleep(0.01)


def finished(source: MemorySource, rows: Iterable[Delivery]) -> bool:
    return all(source.rows[d.id].status != "pending" for d in rows)


async def test_per_host_cap_bounds_requests_in_flight_at_one_host(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks(blocking=True)
    source = MemorySource()
    async with running(source, client, settings(per_host_concurrency=2)) as dispatcher:
        rows = submit(source, dispatcher, [make(sink.url(), n) for n in range(6)])
        await eventually(lambda: sink.local.inflight == 2)
        await stays(lambda: sink.local.inflight == 2 and len(sink.received) == 2)
        sink.gate.set()
        await eventually(lambda: finished(source, rows))
    assert sink.local.peak == 2
    assert sorted(n for n, _ in sink.received) == [str(n) for n in range(6)]
    assert {source.rows[d.id].status for d in rows} == {"succeeded"}


async def test_global_cap_bounds_requests_in_flight_across_hosts(
    sinks: Callable[..., Any], client: DeliveryClient, meter: Meter
) -> None:
    hosts = [await sinks(blocking=True) for _ in range(3)]
    source = MemorySource()
    dispatch = settings(concurrency=3, per_host_concurrency=2)
    async with running(source, client, dispatch) as dispatcher:
        rows = submit(
            source,
            dispatcher,
            [make(h.url(), i * 10 + n) for i, h in enumerate(hosts) for n in (0, 1)],
        )
        await eventually(lambda: meter.inflight == 3)
        await stays(lambda: meter.inflight == 3)
        assert all(h.local.peak <= 2 for h in hosts)
        for h in hosts:
            h.gate.set()
        await eventually(lambda: finished(source, rows))
    assert meter.peak == 3
    assert sum(len(h.received) for h in hosts) == 6


async def test_hung_host_does_not_delay_another_host(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    hung = await sinks(blocking=True)
    healthy = await sinks()
    source = MemorySource()
    dispatch = settings(concurrency=4, per_host_concurrency=2)
    async with running(source, client, dispatch) as dispatcher:
        stuck = submit(source, dispatcher, [make(hung.url(), n) for n in range(5)])
        await eventually(lambda: hung.local.inflight == 2)
        fine = submit(source, dispatcher, [make(healthy.url(), n) for n in range(10, 16)])
        await eventually(lambda: finished(source, fine), within=2.0)
        assert {source.rows[d.id].status for d in fine} == {"succeeded"}
        assert [source.rows[d.id].status for d in stuck] == ["pending"] * 5
        assert hung.local.inflight == 2


async def test_hung_attempt_ends_as_timeout(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    hung = await sinks(blocking=True)
    source = MemorySource()
    async with running(source, client, settings(timeout_seconds=0.5)) as dispatcher:
        [row] = submit(source, dispatcher, [make(hung.url(), retry=())])
        await eventually(lambda: finished(source, [row]), within=3.0)
    [attempt] = source.attempts[row.id]
    assert source.rows[row.id].status == "failed"
    assert attempt.status_code is None
    assert attempt.error == "timed out after 0.5 s"


async def test_stop_releases_every_held_lease_in_flight_or_queued(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    hung = await sinks(blocking=True)
    source = MemorySource()
    dispatcher = Dispatcher(source, client, settings(per_host_concurrency=1), env={})
    dispatcher.start()
    rows = submit(source, dispatcher, [make(hung.url(), n) for n in range(3)])
    await eventually(lambda: hung.local.inflight == 1)
    assert dispatcher.held == 3
    await dispatcher.stop()
    assert sorted(source.released) == sorted(d.id for d in rows)
    assert dispatcher.held == 0
    # Released rows are due again at once for the next process.
    again = await source.claim_due(time.time(), 10, Lease.new(time.time() + 30))
    assert sorted(d.id for d in again) == sorted(d.id for d in rows)
    assert all(source.rows[d.id].attempt_count == 0 for d in rows)


async def test_submit_ignores_deliveries_already_held(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks(blocking=True)
    source = MemorySource()
    async with running(source, client, settings()) as dispatcher:
        [row] = submit(source, dispatcher, [make(sink.url(), 1)])
        await eventually(lambda: sink.local.inflight == 1)
        dispatcher.submit([row], None, Lease.new(time.time() + 30))  # in flight: ignored
        queued = submit(source, dispatcher, [make(sink.url(), n) for n in (2, 3, 4, 5)])
        dispatcher.submit(queued, None, Lease.new(time.time() + 30))  # queued: ignored too
        assert dispatcher.held == 5
        sink.gate.set()
        await eventually(lambda: finished(source, [row, *queued]))
        await asyncio.sleep(0.2)  # a duplicate would have been sent by now
    assert sorted(n for n, _ in sink.received) == ["1", "2", "3", "4", "5"]
    assert all(len(source.attempts[d.id]) == 1 for d in [row, *queued])


async def test_submit_skips_deliveries_not_pending(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks()
    source = MemorySource()
    async with running(source, client, settings()) as dispatcher:
        failed = make(sink.url(), 1, status="failed", next_attempt_at=None)
        ok = make(sink.url(), 2)
        submit(source, dispatcher, [failed, ok])
        await eventually(lambda: finished(source, [ok]))
    assert [n for n, _ in sink.received] == ["2"]


async def test_poller_claims_due_deliveries_and_retries_at_once_when_due(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks(status=500)
    source = MemorySource()
    async with running(source, client, settings(lease_seconds=30.0)):
        # Committed by another process (no lease), due now; retried with no delay: each
        # retry must be claimed as soon as it is due, not after a lease runs out.
        row = source.add(make(sink.url(), 7, retry=(0.0, 0.0)))
        await eventually(lambda: finished(source, [row]), within=3.0)
    assert source.rows[row.id].status == "failed"
    assert [a.status_code for a in source.attempts[row.id]] == [500, 500, 500]
    assert len(sink.received) == 3


async def test_an_attempt_that_raises_is_a_recorded_failed_attempt_under_the_retry_policy(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    # A secret the Signer cannot decode used to raise out of deliver(): the delivery stayed
    # pending with no attempt row and was leased again forever.
    sink = await sinks()
    source = MemorySource()
    env = {"BROKEN_SECRET": "whsec_notbase64!!"}
    async with running(source, client, settings(), env=env):
        row = source.add(make(sink.url(), 5, secret_env="BROKEN_SECRET", retry=(0.0,)))
        await eventually(lambda: finished(source, [row]), within=3.0)
    assert source.rows[row.id].status == "failed"
    attempts = source.attempts[row.id]
    assert len(attempts) == 2  # the first attempt and the one retry the policy allows
    assert all(a.status_code is None for a in attempts)
    assert all("the attempt failed before sending" in (a.error or "") for a in attempts)
    assert "notbase64" not in (attempts[0].error or "")
    assert sink.received == []


async def test_event_fetched_only_when_the_body_needs_it(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks()
    source = MemorySource(targets={"wht_off": TargetInfo(None, False, 3)})
    async with running(source, client, settings()) as dispatcher:
        rendered = make(sink.url(), 1)  # pre-rendered template body
        envelope = make(sink.url(), 2, body=None)  # handed over with its event
        submit(source, dispatcher, [rendered])
        lease = Lease.new(time.time() + 30)
        source.add(envelope, lease)
        dispatcher.submit([envelope], EVENT, lease)
        disabled = make(sink.url(), 3, body=None, target_id="wht_off")
        submit(source, dispatcher, [disabled])
        await eventually(lambda: finished(source, [rendered, envelope, disabled]))
        assert source.event_lookups == []

        claimed_envelope = source.add(make(sink.url(), 4, body=None))  # claimed: no event
        forward = source.add(make(sink.url(), 5, body=None, action_type="forward"))
        await eventually(lambda: finished(source, [claimed_envelope, forward]))
    assert source.event_lookups == [EVENT.id, EVENT.id]
    assert source.rows[disabled.id].status == "held"  # kept for when the target is back
    bodies = {n: body for n, body in sink.received}
    assert bodies["1"] == b'{"n":1}'
    assert bodies["2"] == bodies["4"]
    assert b'"data":{"type":"job_completed"}' in bodies["2"]
    assert bodies["5"] == b'{"eventType":"job_completed","type":"job_completed"}'
    assert "3" not in bodies


async def test_missing_event_fails_the_delivery(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks()
    source = MemorySource()
    async with running(source, client, settings()):
        row = source.add(make(sink.url(), 1, body=None, event_id="evt_gone"))
        await eventually(lambda: finished(source, [row]))
    assert source.rows[row.id].status == "failed"
    assert source.attempts[row.id][0].error == "the event behind this delivery is gone"
    assert sink.received == []


async def test_target_outcome_counts_final_outcomes_only(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks(status=500)
    source = MemorySource(targets={"wht_1": TargetInfo(None, True, 3)})
    async with running(source, client, settings()):
        row = source.add(make(sink.url(), 1, target_id="wht_1", retry=(0.05,)))
        await eventually(lambda: finished(source, [row]))
    assert len(source.attempts[row.id]) == 2
    assert source.outcomes == [("wht_1", False, False)]


async def test_a_delivery_for_a_disabled_target_is_held_unsent(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks()
    source = MemorySource(targets={"wht_off": TargetInfo(None, False, 3)})
    async with running(source, client, settings()):
        row = source.add(make(sink.url(), 1, target_id="wht_off"))
        await eventually(lambda: finished(source, [row]))
    assert source.rows[row.id].status == "held"
    assert sink.received == [] and row.id not in source.attempts
    assert source.outcomes == [] and row.id not in source.leases


@pytest.mark.parametrize(("status", "outcome"), [(200, "succeeded"), (503, "held")])
async def test_the_probe_of_a_disabled_target_is_sent_and_a_failed_one_held_again(
    sinks: Callable[..., Any], client: DeliveryClient, status: int, outcome: str
) -> None:
    sink = await sinks(status=status)
    source = MemorySource()
    async with running(source, client, settings()):
        probe = make(sink.url(), 1, target_id="wht_off", retry=(0.05, 0.05))
        source.targets["wht_off"] = TargetInfo(None, False, 3, probe_delivery_id=probe.id)
        source.add(probe)
        await eventually(lambda: finished(source, [probe]))
    assert [n for n, _ in sink.received] == ["1"]  # once: a failed probe is not retried
    assert source.rows[probe.id].status == outcome
    assert source.outcomes == [("wht_off", status == 200, False)]


async def test_a_hung_hosts_backlog_stays_in_the_store_and_never_delays_another_host(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    hung = await sinks(blocking=True)
    healthy = await sinks()
    source = MemorySource()
    # Committed by other processes (no lease): everything reaches this worker by claims.
    backlog = [source.add(make(hung.url(), n)) for n in range(200)]
    dispatch = settings(per_host_concurrency=2, max_queued_per_host=10, claim_batch=16)
    async with running(source, client, dispatch) as dispatcher:
        await eventually(lambda: hung.local.inflight == 2)
        await eventually(lambda: [delivery_host(hung.url())] in source.skipped_hosts)
        fine = [source.add(make(healthy.url(), n)) for n in range(1000, 1050)]
        await eventually(lambda: finished(source, fine), within=5.0)
        assert {source.rows[d.id].status for d in fine} == {"succeeded"}
        # queued: at most the bound plus one claim batch; the rest was never claimed
        assert dispatcher.held <= 2 + 10 + 16
        unclaimed = [d for d in backlog if d.id not in source.leases]
        assert len(unclaimed) >= 200 - (2 + 10 + 16)


async def test_inline_deliveries_beyond_a_full_host_queue_are_handed_back(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    hung = await sinks(blocking=True)
    source = MemorySource()
    dispatch = settings(per_host_concurrency=1, max_queued_per_host=3)
    async with running(source, client, dispatch) as dispatcher:
        submit(source, dispatcher, [make(hung.url(), 0)])
        await eventually(lambda: hung.local.inflight == 1)
        rows = submit(source, dispatcher, [make(hung.url(), n) for n in range(1, 9)])
        await eventually(lambda: len(source.released) == 5)
        assert dispatcher.held == 4
        assert sorted(source.released) == sorted(d.id for d in rows[3:])


async def test_leases_of_queued_deliveries_are_renewed_while_they_wait(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    slow = await sinks(blocking=True)
    source = MemorySource()
    # Three queued behind one in flight, far longer than a lease.
    dispatch = settings(per_host_concurrency=1, lease_seconds=0.3)
    async with running(source, client, dispatch) as dispatcher:
        rows = submit(source, dispatcher, [make(slow.url(), n) for n in range(4)])
        await eventually(lambda: slow.local.inflight == 1)
        await asyncio.sleep(1.0)  # three lease periods: without renewal, all ran out
        assert await source.claim_due(time.time(), 10, Lease.new(time.time() + 30)) == []
        assert dispatcher.held == 4
        slow.gate.set()
        await eventually(lambda: finished(source, rows))
    assert source.refused == []
    assert sorted(n for n, _ in slow.received) == ["0", "1", "2", "3"]
    assert all(len(source.attempts[d.id]) == 1 for d in rows)


async def test_a_lost_lease_is_not_sent_and_a_stale_finish_is_not_counted(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    slow = await sinks(blocking=True)
    source = MemorySource()
    seen: list[str] = []
    dispatch = settings(per_host_concurrency=1, lease_seconds=0.3)
    dispatcher = Dispatcher(
        source, client, dispatch, env={}, observe=lambda d, a, s: seen.append(d.id)
    )
    dispatcher.start()
    try:
        lease = Lease.new(time.time() + 0.3)
        first, queued = (source.add(make(slow.url(), n), lease) for n in (1, 2))
        dispatcher.submit([first, queued], None, lease)
        await eventually(lambda: slow.local.inflight == 1)
        # Another holder takes both rows over (as after a stall past the lease).
        for row in (first, queued):
            source.leases[row.id] = Lease("another-holder", time.time() + 60)
        await asyncio.sleep(0.5)  # a renewal finds them lost
        slow.gate.set()
        await eventually(lambda: source.refused == [first.id])
        await eventually(lambda: dispatcher.held == 0)
    finally:
        await dispatcher.stop()
    assert [n for n, _ in slow.received] == ["1"]  # the queued one was never sent
    assert first.id not in source.attempts and queued.id not in source.attempts
    assert seen == []
    # the other holder's lease is untouched by this one's stop
    assert source.leases[queued.id].token == "another-holder"


@contextlib.asynccontextmanager
async def closing_server(answer_first: int = 0) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A raw HTTP/1.1 server that answers the first `answer_first` requests on a connection
    (keep-alive) and closes the socket after reading the next one, before any answer.
    Yields its port and every request it read in full."""
    requests: list[bytes] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        handlers.add(current)
        try:
            answered = 0
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                requests.append(head + body)
                if answered >= answer_first:
                    break
                answered += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], requests
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@pytest.mark.parametrize("answer_first", [0, 1], ids=["fresh-connection", "reused-connection"])
async def test_a_connection_closed_before_the_answer_is_one_failed_attempt_never_a_resend(
    client: DeliveryClient, answer_first: int
) -> None:
    source = MemorySource()
    async with closing_server(answer_first) as (port, requests):
        url = f"http://127.0.0.1:{port}/hook"
        async with running(source, client, settings(per_host_concurrency=1)) as dispatcher:
            warm = [] if answer_first == 0 else submit(source, dispatcher, [make(url, 0)])
            await eventually(lambda: finished(source, warm))
            # retry=(60,): a second attempt would come a minute later, not within this test.
            [row] = submit(source, dispatcher, [make(url, 1, retry=(60.0,))])
            await eventually(lambda: source.attempts.get(row.id))
        received = list(requests)
    assert len(received) == answer_first + 1  # each POST reached the server exactly once
    assert b'{"n":1}' in received[-1]
    [attempt] = source.attempts[row.id]
    assert attempt.status_code is None
    assert attempt.error == "connection closed before the answer"
    stored = source.rows[row.id]
    assert stored.status == "pending"  # the retry policy decides what follows
    assert stored.next_attempt_at is not None and stored.next_attempt_at > time.time() + 30


async def test_deliveries_over_a_rate_limit_wait_unsent_while_others_go_on(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks()
    source = MemorySource()
    limit = RateLimit("rule:crm:0", 10.0, 2)
    async with running(source, client, settings()) as dispatcher:
        limited = submit(
            source, dispatcher, [make(sink.url("/limited"), n, rate_limit=limit) for n in range(20)]
        )
        free = submit(source, dispatcher, [make(sink.url("/free"), 100 + n) for n in range(10)])
        # Same host, same queue: the unlimited ones are not held behind the waiting ones.
        await eventually(lambda: finished(source, free))
        assert not finished(source, limited)
        await eventually(lambda: finished(source, limited), within=10.0)
    sent = [tag for tag, _ in sink.received]
    assert sorted(sent) == sorted({str(n) for n in range(20)} | {str(100 + n) for n in range(10)})
    assert source.deferred  # some waited
    for row in limited:
        # waiting is no attempt: one attempt each, the one that succeeded
        assert source.rows[row.id].status == "succeeded"
        assert len(source.attempts[row.id]) == 1
    # Each attempt records the time its slot was granted at, before it started; the
    # unlimited ones have none.
    slots = []
    for row in limited:
        [sent] = source.attempts[row.id]
        assert sent.rate_slot_at is not None and sent.rate_slot_at <= sent.at
        slots.append(sent.rate_slot_at)
    assert sorted(slots) == sorted(source.granted) and len(slots) == 20
    assert all(source.attempts[row.id][0].rate_slot_at is None for row in free)


async def test_a_targets_rate_limit_is_read_from_the_target(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    sink = await sinks()
    secret = "whsec_dGVzdC1zZWNyZXQtZm9yLXJhdGUtbGltaXRz"
    source = MemorySource(
        {
            "wht_slow": TargetInfo(secret, True, None, rate=1.0, burst=1),
            "wht_fast": TargetInfo(secret, True, None),
        }
    )
    async with running(source, client, settings()) as dispatcher:
        slow = submit(
            source,
            dispatcher,
            [make(sink.url("/slow"), n, target_id="wht_slow") for n in range(3)],
        )
        fast = submit(
            source,
            dispatcher,
            [make(sink.url("/fast"), 10 + n, target_id="wht_fast") for n in range(5)],
        )
        await eventually(lambda: finished(source, fast))
        # one at once (burst 1), the others due a second apart, later
        assert sum(source.rows[d.id].status == "succeeded" for d in slow) < 3
        assert {source.rows[d.id].attempt_count for d in slow} <= {0, 1}
        await eventually(lambda: finished(source, slow), within=10.0)
    assert all(len(source.attempts[d.id]) == 1 for d in slow)
    assert set(source.deferred) <= {d.id for d in slow}


class SlowCommitSource(MemorySource):
    """Commits an outcome at once but answers the dispatcher only when `answer` opens, as a
    store whose reply is still on its way when a reader already sees the row."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.committed: list[str] = []

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
        recorded = await super().finish_attempt(
            delivery_id, attempt, status, next_attempt_at, lease_token
        )
        self.committed.append(delivery_id)
        await self.answer.wait()
        return recorded


async def test_a_rule_action_counts_its_failure_before_the_outcome_is_visible(
    sinks: Callable[..., Any], client: DeliveryClient
) -> None:
    """`disable_after = 1`: once the first delivery shows `failed`, a delivery of the same
    action made after that is skipped, even while the store's answer is still in transit
    (the CI run that saw the second one sent and failed)."""
    sink = await sinks(status=500)
    source = SlowCommitSource()
    action = {"rule_id": "flaky", "disable_after": 1}
    async with running(source, client, settings()) as dispatcher:
        (first,) = submit(source, dispatcher, [make(sink.url(), 1, **action)])
        await eventually(lambda: source.rows[first.id].status == "failed")
        (second,) = submit(source, dispatcher, [make(sink.url(), 2, **action)])
        await eventually(lambda: len(source.committed) == 2)
        source.answer.set()
        assert source.rows[second.id].status == "skipped"
        assert [n for n, _ in sink.received] == ["1"]
