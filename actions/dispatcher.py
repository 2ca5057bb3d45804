"""The dispatcher: claims due deliveries, renders, signs and sends them, records attempts.

Shape (after arq's worker): a poller leases due rows from the store in batches; ingest
hands freshly committed deliveries over directly, already leased, so the common case costs
no read. Deliveries wait in per-host queues, each drained by at most `per_host`
tasks under one global semaphore: a hung host can hold only its own `per_host` slots, so
it never delays other hosts, and nothing here ever blocks the ingest path.

Bulkheads: a host's queue holds at most `max_queued_per_host` deliveries; once it is full
the poller claims with that host in `skip_hosts`, so its backlog stays unclaimed in the
store and every other host's due deliveries are still claimed at the next poll (a fixed
cap on everything held let one hung host's 20 000 queued deliveries stop all delivery).

Rate limits wait, they never fail: before a queued delivery of a rate-limited target or
rule action is sent, it takes a slot from its bucket in the store (`take_delivery_slot`,
one bucket per key for every worker and gateway sharing the store). Refused, it is handed
back unsent (`defer`: due when the bucket will have a slot, lease dropped, no attempt, its
attempt count unchanged) and the drain task goes on with the next delivery, so a throttled
target holds no host or global slot while it waits. Deferred deliveries of one key are
spaced one interval apart (up to `RATE_SPREAD_SECONDS` ahead), so they come back about when
their turn comes, not all at once. The attempt records when its slot was granted
(`rate_slot_at`): the bucket bounds those times; a receiver sees each one plus the time the
request took to leave this process and cross the network.

Leases hold: every claim is made under a fresh `Lease` (token and expiry); the leases of
everything held are renewed every third of `lease_seconds`, so a delivery queued behind a
slow host keeps its lease however long it waits. A delivery is sent only while its lease
is valid, and its attempt is recorded only if the store still finds this holder's token
on the row (`finish_attempt` is fenced): a holder that stalled past its lease, whose rows
another process claimed, sends nothing more and records nothing. So with any number of
workers and gateways, a delivery is sent twice only if a process died (or stalled for a
whole lease) while sending it. Its `webhook-id` (the delivery id) is the same on every
attempt, so receivers can dedupe that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlsplit

from actions.client import DeliveryClient
from actions.errors import UnsafeTargetError
from actions.event import EventInfo
from actions.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Lease,
    RateLimit,
    delivery_host,
    target_rate_key,
)
from actions.registry import ACTION_TYPES
from actions.retry import next_attempt_at
from actions.sender import send
from actions.signing import Signer
from rules import default_burst

log = logging.getLogger("hookgate.delivery")


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What sending to an API webhook target needs to know about it right now."""

    secret: str | None
    active: bool
    disable_after: int | None
    rate: float | None = None  # deliveries per second; None: unlimited
    burst: int | None = None
    # While disabled after failures: the held delivery the store let out as its probe.
    probe_delivery_id: str | None = None


class DeliverySource(Protocol):
    """The store as the dispatcher sees it (the gateway adapts its `Store` to this)."""

    async def has_due(self, now: float) -> bool: ...
    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]: ...
    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]: ...
    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool: ...
    async def release(self, held: Mapping[str, str]) -> None: ...
    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool: ...
    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float: ...

    async def hold(self, held: Mapping[str, str]) -> list[str]: ...
    async def event_info(self, event_id: str) -> EventInfo | None: ...
    async def target(self, target_id: str) -> TargetInfo | None: ...
    async def target_outcome(
        self, target_id: str, ok: bool, disable_after: int | None, gone: bool
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    timeout_seconds: float = 15.0
    concurrency: int = 64
    per_host_concurrency: int = 8
    poll_seconds: float = 1.0
    lease_seconds: float = 60.0
    claim_batch: int = 256
    max_queued_per_host: int = 1000
    user_agent: str = "hookgate"


Observer = Callable[[Delivery, Attempt, DeliveryStatus], None]
LineLogger = Callable[[str, dict[str, Any]], None]


def _log_line(msg: str, fields: dict[str, Any]) -> None:
    log.info(msg, extra={"fields": fields})


RENEW_CHUNK = 2000  # leases per renew call
RATE_SPREAD_SECONDS = 10.0  # how far ahead deliveries over a rate limit are spaced out


class _Hold:
    """A delivery this process holds: under which lease token, and until when."""

    __slots__ = ("token", "until")

    def __init__(self, lease: Lease) -> None:
        self.token = lease.token
        self.until = lease.until


class _HostQueue:
    __slots__ = ("active", "items")

    def __init__(self) -> None:
        self.items: deque[tuple[Delivery, EventInfo | None]] = deque()
        self.active = 0


@dataclass(slots=True)
class _Prepared:
    """What one attempt sends: the rendered body, the signing secret, the target (None for a
    rule action) and whether this is the probe of a target disabled after failures."""

    secret: str | None
    target: TargetInfo | None = None
    reprobe: bool = False
    body: bytes = b""


class Dispatcher:
    def __init__(
        self,
        source: DeliverySource,
        client: DeliveryClient,
        settings: DispatchSettings,
        *,
        env: Mapping[str, str],
        observe: Observer | None = None,
        log_line: LineLogger = _log_line,
    ) -> None:
        self._source = source
        self._client = client
        self._settings = settings
        self._env = env
        self._observe = observe
        self._log_line = log_line
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._hosts: dict[str, _HostQueue] = {}
        self._held: dict[str, _Hold] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._wake_at: list[float] = []
        self._poller: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._signers: dict[str, Signer] = {}
        self._rule_failures: dict[tuple[str | None, str], int] = {}
        self._recording: set[asyncio.Task[Any]] = set()
        self._recording_ids: set[str] = set()
        self._rate_next: dict[str, float] = {}  # rate-limit key -> next deferral's due time

    # lifecycle
    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="hookgate-dispatcher")
        self._renewer = asyncio.create_task(self._renew(), name="hookgate-lease-renewal")

    async def stop(self) -> None:
        """Stop sending; deliveries held but not finished get their leases released so a
        restart sends them at once."""
        # Taken before cancelling: a cancelled drain task forgets its in-flight delivery on
        # the way out, and that delivery's lease must be released too.
        snapshot = {i: h.token for i, h in self._held.items()}
        tasks = [t for t in (self._poller, self._renewer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Attempts already made are recorded before anything is handed back.
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        held = snapshot | {i: h.token for i, h in self._held.items()}
        self._held.clear()
        self._hosts.clear()
        if held:
            # Logged: a stop that hands back deliveries held long past their due time shows
            # what had stalled them.
            log.info("stopping: handing back %d held deliveries", len(held))
            with contextlib.suppress(Exception):
                await self._source.release(held)

    @property
    def held(self) -> int:
        return len(self._held)

    # intake
    def submit(self, deliveries: Iterable[Delivery], event: EventInfo | None, lease: Lease) -> None:
        """Queue deliveries this process already holds under `lease` (fresh from ingest).

        One whose host's queue is full is handed back to the store instead, for a poll to
        claim once the host has room: the bulkhead holds for inline delivery too.
        """
        overflow: dict[str, str] = {}
        for delivery in deliveries:
            if delivery.status != "pending" or delivery.id in self._held:
                continue
            if not self._enqueue(delivery, event, lease, bounded=True):
                overflow[delivery.id] = lease.token
        if overflow:
            task = asyncio.create_task(self._release(overflow))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _release(self, held: dict[str, str]) -> None:
        try:
            await self._source.release(held)
        except Exception as exc:
            log.warning("releasing %d deliveries failed: %s", len(held), exc)

    def wake(self) -> None:
        """Claim due deliveries now instead of at the next poll (after retry/recover)."""
        self._wake.set()

    def _enqueue(
        self, delivery: Delivery, event: EventInfo | None, lease: Lease, *, bounded: bool
    ) -> bool:
        """Queue a held delivery; False (and not queued) if already held, or if `bounded`
        and its host's queue is full."""
        hold = self._held.get(delivery.id)
        if hold is not None:
            # Claimed again by this process (its lease ran out unclaimed): the newest lease
            # is the one the store checks.
            hold.token, hold.until = lease.token, lease.until
            return False
        host = delivery_host(delivery.url)
        queue = self._hosts.get(host)
        if queue is None:
            queue = self._hosts[host] = _HostQueue()
        elif bounded and len(queue.items) >= self._settings.max_queued_per_host:
            return False
        self._held[delivery.id] = _Hold(lease)
        queue.items.append((delivery, event))
        if queue.active < self._settings.per_host_concurrency:
            queue.active += 1
            task = asyncio.create_task(self._drain(host, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def _full_hosts(self) -> list[str]:
        limit = self._settings.max_queued_per_host
        return [host for host, queue in self._hosts.items() if len(queue.items) >= limit]

    async def _drain(self, host: str, queue: _HostQueue) -> None:
        try:
            while queue.items:
                delivery, event = queue.items.popleft()
                try:
                    async with self._sem:
                        hold = self._held.get(delivery.id)
                        if hold is None or hold.until <= time.time():
                            # Not renewed in time (the store was unreachable, or another
                            # holder took it): sending now could send it twice.
                            log.warning(
                                "delivery %s not sent: its lease ran out while queued",
                                delivery.id,
                            )
                            continue
                        target = None
                        if delivery.target_id is not None:
                            target = await self._source.target(delivery.target_id)
                        waits, slot_at = await self._take_rate_slot(delivery, hold, target)
                        if waits:
                            continue
                        await self.deliver(
                            delivery,
                            event,
                            background=True,
                            target_info=target,
                            rate_slot_at=slot_at,
                        )
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("delivery %s failed unexpectedly", delivery.id)
                finally:
                    if delivery.id not in self._recording_ids:
                        self._held.pop(delivery.id, None)
        finally:
            queue.active -= 1
            if queue.active == 0 and not queue.items and self._hosts.get(host) is queue:
                del self._hosts[host]

    def _rate_limit(self, delivery: Delivery, target: TargetInfo | None) -> RateLimit | None:
        if delivery.target_id is None:
            return delivery.rate_limit
        if target is None or not target.active or target.rate is None:
            return None  # a disabled or deleted target's delivery is skipped, not throttled
        burst = target.burst or default_burst(target.rate)
        return RateLimit(target_rate_key(delivery.target_id), target.rate, burst)

    async def _take_rate_slot(
        self, delivery: Delivery, hold: _Hold, target: TargetInfo | None
    ) -> tuple[bool, float | None]:
        """Take a slot of the delivery's rate limit: (False, the time the bucket was charged
        at) to send it now, (False, None) when it has no limit; when there is no slot, hand
        it back to the store until the bucket will have one: (True, None), not sent, not
        failed."""
        limit = self._rate_limit(delivery, target)
        if limit is None:
            return False, None
        now = time.time()
        wait = await self._source.take_delivery_slot(limit.key, limit.rate, limit.burst, now)
        if wait <= 0:
            return False, now
        # Spaced by the interval, the deliveries waiting on one key come back one at a time
        # rather than all at once; but no further than RATE_SPREAD_SECONDS ahead, so a
        # raised (or removed) limit applies within seconds to what waits.
        first = now + wait
        until = max(first, self._rate_next.get(limit.key, 0.0))
        if until > first + RATE_SPREAD_SECONDS:
            until = first + RATE_SPREAD_SECONDS
        else:
            self._rate_next[limit.key] = until + 1.0 / limit.rate
        if len(self._rate_next) > 10_000:
            self._rate_next = {k: t for k, t in self._rate_next.items() if t > now}
        log.debug("delivery %s waits for its rate limit %s", delivery.id, limit.key)
        deferred = await self._source.defer(delivery.id, hold.token, until)
        if self._held.get(delivery.id) is hold:
            self._held.pop(delivery.id, None)
        if deferred:
            heapq.heappush(self._wake_at, until)
            self._wake.set()
        return True, None

    async def _poll(self) -> None:
        settings = self._settings
        while True:
            now = time.time()
            while self._wake_at and self._wake_at[0] <= now:
                heapq.heappop(self._wake_at)
            delay = settings.poll_seconds
            if self._wake_at:
                delay = min(delay, max(0.0, self._wake_at[0] - now))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            while True:
                limit = settings.claim_batch
                now = time.time()
                lease = Lease.new(now + settings.lease_seconds)
                try:
                    # A read first: claiming is a write, and most polls find nothing due.
                    if not await self._source.has_due(now):
                        break
                    claimed = await self._source.claim_due(now, limit, lease, self._full_hosts())
                except Exception as exc:
                    log.warning("claiming deliveries failed: %s", exc)
                    break
                # A claim may fill a host's queue past its bound by at most this batch;
                # the next claim skips that host.
                for delivery in claimed:
                    self._enqueue(delivery, None, lease, bounded=False)
                if len(claimed) < limit:
                    break

    async def _renew(self) -> None:
        """Extend the lease of everything held (queued, sending or recording) every third
        of a lease, so a delivery keeps its lease however long its host's queue is; one
        the store no longer finds under our token is lost and will not be sent."""
        settings = self._settings
        while True:
            await asyncio.sleep(settings.lease_seconds / 3)
            now = time.time()
            until = now + settings.lease_seconds
            stale = [
                (i, h.token)
                for i, h in self._held.items()
                if h.until - now < settings.lease_seconds * 2 / 3
            ]
            for start in range(0, len(stale), RENEW_CHUNK):
                chunk = dict(stale[start : start + RENEW_CHUNK])
                try:
                    renewed = set(await self._source.renew(chunk, until))
                except Exception as exc:
                    log.warning("renewing %d leases failed: %s", len(chunk), exc)
                    continue
                for delivery_id, token in chunk.items():
                    hold = self._held.get(delivery_id)
                    if hold is None or hold.token != token:
                        continue
                    if delivery_id in renewed:
                        hold.until = until
                    else:
                        hold.until = 0.0  # lost: dropped before sending, refused at finish

    # one attempt
    async def deliver(
        self,
        delivery: Delivery,
        event: EventInfo | None = None,
        *,
        probe: bool = False,
        background: bool = False,
        lease: Lease | None = None,
        target_info: TargetInfo | None = None,
        rate_slot_at: float | None = None,
    ) -> tuple[Attempt, DeliveryStatus]:
        """Send one attempt of `delivery` now, record it and schedule what follows.

        `lease` is the caller's, for a delivery not queued here (the probe); a queued one
        goes under the lease it was queued with. `target_info`: its target as the caller
        just read it (so it is not read twice). `rate_slot_at`: when its rate limit granted
        the slot this attempt is sent in (recorded on the attempt).

        A `probe` (the target test endpoint) is recorded like any delivery but does not
        count toward disabling its target: testing an endpoint that is not ready yet must
        not switch it off.
        """
        if lease is not None:
            self._held[delivery.id] = _Hold(lease)
        prepared = await self._prepare(delivery, event, probe, target_info)
        if not isinstance(prepared, _Prepared):
            return prepared  # refused, skipped or held: recorded without sending
        try:
            attempt = await self._send(delivery, prepared.body, prepared.secret)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Whatever raised, the delivery gets an attempt row and its retry policy: a
            # delivery that raised must never stay pending with no attempt, leased again
            # and again.
            attempt = _refused(f"the attempt failed before sending: {type(exc).__name__}: {exc}")
        if rate_slot_at is not None:
            attempt = dataclasses.replace(attempt, rate_slot_at=rate_slot_at)
        gone = attempt.status_code == 410
        status, next_at = self._outcome(delivery, attempt, prepared, gone)
        record = self._record(delivery, attempt, status, next_at, prepared.target, gone, probe)
        if not background:
            return await record
        # The host slot is free as soon as the answer is in; recording it (a store commit)
        # finishes on its own, and the lease is held until then.
        self._recording_ids.add(delivery.id)
        task = asyncio.create_task(record)
        self._recording.add(task)
        task.add_done_callback(partial(self._recorded, delivery.id))
        return attempt, status

    async def _prepare(
        self,
        delivery: Delivery,
        event: EventInfo | None,
        probe: bool,
        target_info: TargetInfo | None,
    ) -> _Prepared | tuple[Attempt, DeliveryStatus]:
        """What sending needs (body, secret, target), or the recorded reason it is not sent:
        a disabled or deleted target, a missing secret, an auto-disabled rule action, an
        unknown action type, a body that cannot be rendered, a URL the guard refuses."""
        signing = await self._signing(delivery, probe, target_info)
        if not isinstance(signing, _Prepared):
            return signing
        rule_key = (delivery.rule_id, delivery.url)
        if (
            delivery.disable_after is not None
            and delivery.target_id is None
            and self._rule_failures.get(rule_key, 0) >= delivery.disable_after
        ):
            refusal = _refused("action disabled after consecutive failures (reload rules to reset)")
            return await self._finish(delivery, refusal, "skipped", None)
        action = ACTION_TYPES.get(delivery.action_type)
        if action is None:
            refusal = _refused(f"unknown action type {delivery.action_type!r}")
            return await self._finish(delivery, refusal, "failed", None)
        if event is None and action.needs_event(delivery):
            event = await self._source.event_info(delivery.event_id)
        try:
            signing.body = action.body(delivery, event)
            # Syntax and IP literals here (no DNS); names are checked by the client's
            # resolver on the one lookup the connection uses.
            self._client.target(delivery.url)
        except LookupError as exc:
            return await self._finish(delivery, _refused(str(exc)), "failed", None)
        except UnsafeTargetError as exc:
            return await self._finish(delivery, _refused(exc.reason), "failed", None)
        return signing

    async def _signing(
        self, delivery: Delivery, probe: bool, target_info: TargetInfo | None
    ) -> _Prepared | tuple[Attempt, DeliveryStatus]:
        """The target and signing secret of `delivery`. A disabled target's delivery is held
        (unless it is the target's probe); a test send to one, or to a deleted target, is
        skipped; a rule action whose secret variable is unset fails."""
        if delivery.target_id is not None:
            target = target_info or await self._source.target(delivery.target_id)
            if target is None or (probe and not target.active):
                refusal = _refused("target is disabled or deleted")
                return await self._finish(delivery, refusal, "skipped", None)
            if not target.active and target.probe_delivery_id != delivery.id:
                return await self._hold(delivery)
            return _Prepared(secret=target.secret, target=target, reprobe=not target.active)
        secret: str | None = None
        if delivery.secret_env:
            secret = self._env.get(delivery.secret_env)
            if not secret:
                refusal = _refused(f"signing secret env var {delivery.secret_env} is not set")
                return await self._finish(delivery, refusal, "failed", None)
        return _Prepared(secret=secret)

    def _outcome(
        self, delivery: Delivery, attempt: Attempt, prepared: _Prepared, gone: bool
    ) -> tuple[DeliveryStatus, float | None]:
        """The delivery's status after `attempt` and when its next attempt is due."""
        if attempt.ok:
            return "succeeded", None
        if prepared.reprobe:
            # A failed probe waits with the rest, in order; the store doubles the wait.
            return "held", None
        next_at = None
        if not (gone and prepared.target is not None):
            next_at = next_attempt_at(
                delivery.retry, delivery.attempt_count + 1, time.time(), attempt.retry_after
            )
        return ("pending" if next_at is not None else "failed"), next_at

    async def _send(self, delivery: Delivery, body: bytes, secret: str | None) -> Attempt:
        settings = self._settings
        headers = {"Content-Type": "application/json", "User-Agent": settings.user_agent}
        headers.update(delivery.headers)
        if secret:
            signer = self._signers.get(secret)
            if signer is None:
                signer = self._signers[secret] = Signer(secret)
            headers.update(signer.headers(delivery.id, int(time.time()), body))
        timeout = delivery.timeout_seconds or settings.timeout_seconds
        return await send(self._client, delivery.url, body, headers, timeout=timeout)

    def _recorded(self, delivery_id: str, task: asyncio.Task[Any]) -> None:
        self._recording.discard(task)
        self._recording_ids.discard(delivery_id)
        # A recorded one left `_held` in `_settle` (a retry may be held again already).
        if not task.cancelled() and task.exception() is not None:
            self._held.pop(delivery_id, None)
            log.error("recording delivery %s failed: %s", delivery_id, task.exception())

    async def _record(
        self,
        delivery: Delivery,
        attempt: Attempt,
        status: DeliveryStatus,
        next_at: float | None,
        target: TargetInfo | None,
        gone: bool,
        probe: bool,
    ) -> tuple[Attempt, DeliveryStatus]:
        # A rule action's failure count moves before the outcome is committed: once the
        # store shows this delivery `failed`, a later delivery of the action must already
        # see the count (it is put back if the lease was lost and nothing was recorded).
        final = status != "pending" and not probe  # an outcome that counts toward disabling
        counted = final and delivery.target_id is None and delivery.disable_after is not None
        rule_key = (delivery.rule_id, delivery.url)
        before = self._rule_failures.get(rule_key, 0)
        if counted:
            self._rule_failures[rule_key] = 0 if attempt.ok else before + 1
        recorded = await self._settle(delivery, attempt, status, next_at)
        if counted and not recorded:
            self._rule_failures[rule_key] = before
        if recorded and final and target is not None and delivery.target_id is not None:
            await self._source.target_outcome(
                delivery.target_id, attempt.ok, target.disable_after, gone
            )
        return attempt, status

    async def _hold(self, delivery: Delivery) -> tuple[Attempt, DeliveryStatus]:
        """Hand a delivery for a disabled target back to the store as `held` (fenced by
        this holder's lease): it is not attempted, and waits, in order, for its target."""
        hold = self._held.get(delivery.id)
        token = "" if hold is None else hold.token
        try:
            kept = await self._source.hold({delivery.id: token})
        finally:
            if self._held.get(delivery.id) is hold:
                self._held.pop(delivery.id, None)
        status: DeliveryStatus = "held" if kept else "pending"
        return _refused("target is disabled: delivery held"), status

    async def _finish(
        self,
        delivery: Delivery,
        attempt: Attempt,
        status: DeliveryStatus,
        next_at: float | None,
    ) -> tuple[Attempt, DeliveryStatus]:
        await self._settle(delivery, attempt, status, next_at)
        return attempt, status

    async def _settle(
        self,
        delivery: Delivery,
        attempt: Attempt,
        status: DeliveryStatus,
        next_at: float | None,
    ) -> bool:
        """Record the attempt under this holder's lease; False if the store refused it
        (the lease was lost to another holder: that holder's outcome is the one kept)."""
        hold = self._held.get(delivery.id)
        token = "" if hold is None else hold.token
        recorded = await self._source.finish_attempt(delivery.id, attempt, status, next_at, token)
        # Recorded (or refused), so no longer ours: a retry due now may be claimed at once.
        if self._held.get(delivery.id) is hold:
            self._held.pop(delivery.id, None)
        if not recorded:
            log.warning(
                "delivery attempt not recorded: its lease was lost to another holder",
                extra={"fields": {"delivery_id": delivery.id, "outcome": status}},
            )
            return False
        if next_at is not None:
            heapq.heappush(self._wake_at, next_at)
            self._wake.set()
        elif delivery.ordering_key is not None:
            self._wake.set()  # the next delivery of its key may go now, not at the next poll
        self._log_line(
            "delivery attempt",
            {
                "delivery_id": delivery.id,
                "event_id": delivery.event_id,
                "rule_id": delivery.rule_id,
                "target_id": delivery.target_id,
                "url": _redact(delivery.url),
                "attempt": delivery.attempt_count + 1,
                "status_code": attempt.status_code,
                "latency_ms": round(attempt.latency_ms, 2),
                "outcome": status,
                "error": attempt.error,
            },
        )
        if self._observe is not None:
            self._observe(delivery, attempt, status)
        return True

    def reset_rule_failures(self) -> None:
        """Forget auto-disabled rule actions (called when the rule set is reloaded)."""
        self._rule_failures.clear()


def _refused(reason: str) -> Attempt:
    """An attempt that never left this process."""
    return Attempt(
        at=time.time(), status_code=None, latency_ms=0.0, error=reason, response_excerpt=None
    )


def _redact(url: str) -> str:
    """The URL without its query string or userinfo, which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
