"""The storage protocol every backend implements, and the shapes it returns.

The rest of the gateway talks to `Store` only; backends live one per module and are built
by `open_store(settings)`, so no other module imports a backend.

Leases (every backend, checked by the contract suite): a pending delivery is held by at
most one process at a time, under a `Lease` (a token and an expiry) that the holder chose
when it claimed the row (`claim_due`) or committed it (`add_event`/`add_deliveries` with a
lease). The row keeps the token. `finish_attempt`, `renew` and `release` take the token
and act only on rows that still carry it, in the same transaction (or script) as the
write: a holder whose lease ran out and whose row another process claimed records
nothing, renews nothing and releases nothing. A row whose lease ran out can be claimed by
anyone; until then it is skipped. `requeue` (a manual retry) clears the token.

Held, not dropped (every backend): deliveries for a disabled webhook target are `held`,
neither claimed nor attempted. Disabling a target (`record_target_outcome` after
`disable_after` failures, or `set_target_status`) holds its pending unleased deliveries;
`hold` turns a claimed one into `held` under its lease token. A target disabled after
failures is probed: `probe_targets` makes its oldest held delivery pending once
`next_probe_at` has come; the probe's success (`record_target_outcome(ok=True)`) makes the
target active and every held delivery pending, due now, in accept (id) order; its failure
doubles the wait. `delete_target` makes the target's held deliveries `skipped`.

Ordering (every backend, checked by the contract suite): a delivery with an
`ordering_key` is claimed only while no delivery of the same key committed before it is
still pending (due, scheduled, leased or waiting for a retry); its key's next delivery
becomes claimable when it reaches a final status or is cancelled. Commit order is accept
order. An ordered delivery is never held by the commit that adds it (a `lease` given to
`add_event`/`add_deliveries` is not applied to it): only a claim knows whether it heads
its key. A manual `requeue` of a finished ordered delivery puts it at the back of its key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from actions.model import Attempt, Delivery, DeliveryStatus, Lease
from gateway.models import App, Event, TargetStatus, WebhookTarget

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; `next_cursor` is None on the last page."""

    data: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """What committing an event produced: its id, or the original id for a duplicate."""

    event_id: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    status: DeliveryStatus | None = None
    target_id: str | None = None
    rule_id: str | None = None
    event_id: str | None = None
    since: float | None = None


class Store(Protocol):
    """Durable state: apps, events, webhook targets, deliveries and their attempts.

    Writes that answer a request (`add_event`) are group-committed: the call returns only
    once the event and its deliveries are durable, so a 2xx is never answered for an event
    a crash could lose.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""

    # apps
    async def create_app(self, app: App) -> None:
        """Insert; StoreError if the name is taken."""

    async def save_app(self, app: App) -> None: ...
    async def get_app(self, app_id: str) -> App | None: ...
    async def find_app(self, id_or_name: str) -> App | None: ...
    async def list_apps(self) -> list[App]: ...
    async def delete_app(self, app_id: str) -> bool: ...
    async def apps_version(self) -> int:
        """A number that changes whenever any process changes any app."""

    # events
    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> Accepted:
        """Commit an event and its deliveries together (held under `lease`, if given, by
        the process that will send them); for a repeated idempotency key, commit nothing
        and return the original event id."""

    async def find_idempotent(self, app_id: str, key: str, since: float) -> str | None: ...
    async def get_event(self, event_id: str) -> Event | None: ...
    async def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        """The events that exist among `event_ids` (any order): one round trip."""

    async def list_events(
        self,
        *,
        app_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Event]: ...
    async def count_events(self) -> int: ...

    # webhook targets
    async def create_target(self, target: WebhookTarget) -> None: ...
    async def save_target(self, target: WebhookTarget) -> None: ...
    async def get_target(self, target_id: str) -> WebhookTarget | None: ...
    async def list_targets(self) -> list[WebhookTarget]: ...
    async def targets_version(self) -> int: ...
    async def delete_target(self, target_id: str) -> bool:
        """Delete; its held deliveries become `skipped` (pending ones are skipped by the
        dispatcher when claimed)."""

    async def record_target_outcome(
        self,
        target_id: str,
        ok: bool,
        disable_after: int | None,
        gone: bool = False,
        *,
        now: float | None = None,
    ) -> WebhookTarget | None:
        """Count a delivery's final outcome against its target; disable it after
        `disable_after` consecutive failures (or at once when `gone`), holding its pending
        unleased deliveries, with the first probe due `reenable_after` from `now`.

        On a target disabled after failures, a success re-enables it and releases what it
        held (pending, due now); a failure while a probe is out (the probe's) doubles the
        wait, up to `PROBE_INTERVAL_MAX`. On a target disabled by hand nothing changes."""

    async def set_target_status(
        self, target_id: str, status: TargetStatus, now: float
    ) -> WebhookTarget | None:
        """A status set by hand: `disabled` holds (never probed), `active` resets the
        failure count and releases every held delivery at once (pending, due `now`)."""

    async def probe_targets(self, now: float) -> list[str]:
        """The periodic step of held deliveries; answers the ids it made pending.

        For each target disabled after failures whose `next_probe_at` has come and has no
        probe out, its oldest held delivery becomes pending, due now, as the probe (and the
        next check is `probe_interval` later). Held deliveries of an active target (held by
        a process whose view was behind) are released; those of a deleted one skipped."""

    # deliveries
    async def add_deliveries(
        self, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> None: ...
    async def has_due(self, now: float) -> bool:
        """Whether any pending, unleased delivery is due and claimable (a cheap read before
        claiming; an ordered one waiting behind its key's head does not count)."""

    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        """Put up to `limit` pending deliveries whose `next_attempt_at` has come and whose
        lease (if any) ran out under `lease`, oldest due first; of ordered deliveries, only
        the head of each key (see the module docstring).

        Deliveries to a host in `skip_hosts` (`actions.delivery_host(url)`) are left unclaimed,
        however many are due: a worker whose queue for a hung host is full still claims
        every other host's deliveries (the bulkhead of `delivery.max_queued_per_host`).
        """

    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        """Extend to `lease_until` the leases of `held` (delivery id -> lease token) that
        still carry that token; returns the ids renewed (the others were lost)."""

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
        """Record one attempt and the delivery's new state, and drop the lease, if the
        delivery is pending and still held under `lease_token`; otherwise record nothing
        and answer False (another process claimed it after this holder's lease ran out)."""

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery with every attempt."""

    async def list_deliveries(
        self, flt: DeliveryFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]: ...
    async def deliveries_for_event(self, event_id: str) -> list[Delivery]: ...
    async def requeue(self, delivery_ids: Sequence[str], now: float) -> int:
        """Make deliveries pending and due now (manual retry); returns how many."""

    async def cancel(self, delivery_ids: Sequence[str]) -> list[str]:
        """Mark the pending deliveries among `delivery_ids` `cancelled` and drop their
        leases (a holder's later `finish_attempt` then records nothing); returns the ids
        cancelled. Finished and unknown ids are left alone."""

    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        """Hand a held delivery back unsent, due again at `until`, if it is pending and
        still held under `lease_token`: the lease is dropped, no attempt is recorded and
        its attempt count is unchanged (a delivery over its rate limit waits; waiting is
        not failing). False, and nothing changed, if the lease was lost."""

    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        """Spend one slot of the delivery rate limit `key` (GCRA: `rate` per second, up to
        `burst` at once) and answer 0.0, or spend nothing and answer the seconds until a
        slot is free. One bucket per key for every process sharing the store: the server
        process's for memory and SQLite (its workers ask it), the database's otherwise."""

    async def release(self, held: Mapping[str, str]) -> None:
        """Drop the leases of `held` (delivery id -> lease token) that still carry that
        token, on deliveries this process will not send (shutdown, a full queue)."""

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        """Make `held` (delivery id -> lease token) deliveries still under that token
        `held` and drop their leases, where their target is disabled and they are not its
        probe; the others just lose their lease (claimable again). Returns the ids held."""

    async def failed_since(self, since: float, target_id: str | None = None) -> list[str]: ...
    async def count_pending(self) -> int: ...

    async def prune(self, events_before: float, idempotency_before: float) -> int:
        """Drop events (and their finished deliveries: not pending, not held) received
        before `events_before`;
        forget idempotency keys older than `idempotency_before`. Returns events dropped."""
