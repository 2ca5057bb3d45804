"""In-process store for unit tests and throwaway runs: same contract, nothing durable."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Collection, Mapping, Sequence

from actions.model import Attempt, Delivery, DeliveryStatus, Lease, delivery_host
from gateway.errors import StoreError
from gateway.limits.buckets import SlotBuckets
from gateway.models import App, Event, TargetStatus, WebhookTarget, next_probe_interval
from gateway.store.base import Accepted, DeliveryFilter, Page


class MemoryStore:
    """Dicts behind the `Store` protocol; ids sort by creation, as in every backend."""

    def __init__(self, *, idempotency_ttl: float = 86_400.0) -> None:
        self._idempotency_ttl = idempotency_ttl
        self._apps: dict[str, App] = {}
        self._events: dict[str, Event] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._targets: dict[str, WebhookTarget] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._leases: dict[str, Lease] = {}
        self._slots = SlotBuckets()
        self._order: dict[str, int] = {}  # ordered delivery id -> its place in accept order
        self._next_order = itertools.count()
        self._apps_version = 0
        self._targets_version = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # apps
    async def create_app(self, app: App) -> None:
        if any(a.name == app.name for a in self._apps.values()):
            raise StoreError(f"an app named {app.name!r} already exists")
        self._apps[app.id] = app
        self._apps_version += 1

    async def save_app(self, app: App) -> None:
        if any(a.name == app.name and a.id != app.id for a in self._apps.values()):
            raise StoreError(f"an app named {app.name!r} already exists")
        self._apps[app.id] = app
        self._apps_version += 1

    async def get_app(self, app_id: str) -> App | None:
        return self._apps.get(app_id)

    async def find_app(self, id_or_name: str) -> App | None:
        app = self._apps.get(id_or_name)
        if app is None:
            app = next((a for a in self._apps.values() if a.name == id_or_name), None)
        return app

    async def list_apps(self) -> list[App]:
        return sorted(self._apps.values(), key=lambda a: a.id)

    async def delete_app(self, app_id: str) -> bool:
        found = self._apps.pop(app_id, None) is not None
        self._apps_version += found
        return found

    async def apps_version(self) -> int:
        return self._apps_version

    # events
    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> Accepted:
        if event.idempotency_key is not None:
            key = (event.app_id, event.idempotency_key)
            original = self._idempotency.get(key)
            known = self._events.get(original) if original is not None else None
            expired = known is not None and known.received_at < event.received_at - (
                self._idempotency_ttl
            )
            if original is not None and not expired:
                return Accepted(original, duplicate=True)
            self._idempotency[key] = event.id
        self._events[event.id] = event
        await self.add_deliveries(deliveries, lease)
        return Accepted(event.id)

    async def find_idempotent(self, app_id: str, key: str, since: float) -> str | None:
        event_id = self._idempotency.get((app_id, key))
        if event_id is None:
            return None
        event = self._events.get(event_id)
        return event_id if event is not None and event.received_at >= since else None

    async def get_event(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    async def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        return [self._events[i] for i in dict.fromkeys(event_ids) if i in self._events]

    async def list_events(
        self,
        *,
        app_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Event]:
        rows = [
            e
            for e in self._events.values()
            if (app_id is None or e.app_id == app_id)
            and (event_type is None or e.event_type == event_type)
            and (since is None or e.received_at >= since)
            and (cursor is None or e.id < cursor)
        ]
        rows.sort(key=lambda e: e.id, reverse=True)
        page = rows[:limit]
        return Page(page, page[-1].id if len(rows) > limit else None)

    async def count_events(self) -> int:
        return len(self._events)

    # webhook targets
    async def create_target(self, target: WebhookTarget) -> None:
        self._targets[target.id] = target
        self._targets_version += 1

    async def save_target(self, target: WebhookTarget) -> None:
        self._targets[target.id] = target
        self._targets_version += 1

    async def get_target(self, target_id: str) -> WebhookTarget | None:
        return self._targets.get(target_id)

    async def list_targets(self) -> list[WebhookTarget]:
        return sorted(self._targets.values(), key=lambda t: t.id)

    async def delete_target(self, target_id: str) -> bool:
        found = self._targets.pop(target_id, None) is not None
        self._targets_version += found
        if found:
            for delivery in self._held_of(target_id):
                self._set(delivery, "skipped", None)
        return found

    async def targets_version(self) -> int:
        return self._targets_version

    async def record_target_outcome(
        self,
        target_id: str,
        ok: bool,
        disable_after: int | None,
        gone: bool = False,
        *,
        now: float | None = None,
    ) -> WebhookTarget | None:
        target = self._targets.get(target_id)
        if target is None:
            return None
        now = time.time() if now is None else now
        if target.status == "disabled":
            if target.probe_interval is None:  # disabled by hand: outcomes change nothing
                return target
            if ok:
                return self._enable(target, now)
            if target.probe_delivery_id is None:
                return target
            # the probe failed: the next one waits twice as long (up to the cap)
            interval = next_probe_interval(target.probe_interval)
            target = dataclasses.replace(
                target,
                consecutive_failures=target.consecutive_failures + 1,
                probe_interval=interval,
                next_probe_at=now + interval,
                probe_delivery_id=None,
            )
            self._targets[target_id] = target
            self._targets_version += 1
            return target
        failures = 0 if ok else target.consecutive_failures + 1
        target = dataclasses.replace(target, consecutive_failures=failures)
        self._targets[target_id] = target
        if gone or (not ok and disable_after is not None and failures >= disable_after):
            return self._disable(target, now, probe=True)
        return target

    async def set_target_status(
        self, target_id: str, status: TargetStatus, now: float
    ) -> WebhookTarget | None:
        target = self._targets.get(target_id)
        if target is None:
            return None
        if status == "active":
            return self._enable(target, now)
        return self._disable(target, now, probe=False)

    def _disable(self, target: WebhookTarget, now: float, *, probe: bool) -> WebhookTarget:
        """Disable `target` and hold its pending unleased deliveries; `probe`: disabled
        after failures, so probed again after its `reenable_after`."""
        target = dataclasses.replace(
            target,
            status="disabled",
            disabled_at=target.disabled_at if target.status == "disabled" else now,
            probe_interval=target.reenable_after if probe else None,
            next_probe_at=now + target.reenable_after if probe else None,
            probe_delivery_id=None,
        )
        self._targets[target.id] = target
        self._targets_version += 1
        for delivery in list(self._deliveries.values()):
            if (
                delivery.target_id == target.id
                and delivery.status == "pending"
                and self._free(delivery.id, now)
            ):
                self._set(delivery, "held", None)
        return target

    def _enable(self, target: WebhookTarget, now: float) -> WebhookTarget:
        """Make `target` active and its held deliveries pending, due now, in accept order."""
        target = dataclasses.replace(
            target,
            status="active",
            consecutive_failures=0,
            disabled_at=None,
            next_probe_at=None,
            probe_interval=None,
            probe_delivery_id=None,
        )
        self._targets[target.id] = target
        self._targets_version += 1
        for delivery in self._held_of(target.id):
            self._set(delivery, "pending", now)
        return target

    def _held_of(self, target_id: str) -> list[Delivery]:
        return sorted(
            (
                d
                for d in self._deliveries.values()
                if d.target_id == target_id and d.status == "held"
            ),
            key=lambda d: d.id,
        )

    def _set(self, delivery: Delivery, status: DeliveryStatus, next_at: float | None) -> None:
        self._deliveries[delivery.id] = dataclasses.replace(
            delivery, status=status, next_attempt_at=next_at
        )
        self._leases.pop(delivery.id, None)

    async def probe_targets(self, now: float) -> list[str]:
        made_pending: list[str] = []
        for delivery in list(self._deliveries.values()):
            if delivery.status == "held" and delivery.target_id not in self._targets:
                self._set(delivery, "skipped", None)  # its target was deleted meanwhile
        for target in list(self._targets.values()):
            held = self._held_of(target.id)
            if not held:
                continue
            if target.status == "active":  # held by a view that was behind: release
                for delivery in held:
                    self._set(delivery, "pending", now)
                made_pending += [d.id for d in held]
                continue
            if target.probe_interval is None or (target.next_probe_at or 0.0) > now:
                continue
            probe = self._deliveries.get(target.probe_delivery_id or "")
            if probe is not None and probe.status == "pending":
                continue  # the last probe is still out
            self._set(held[0], "pending", now)
            self._targets[target.id] = dataclasses.replace(
                target, probe_delivery_id=held[0].id, next_probe_at=now + target.probe_interval
            )
            self._targets_version += 1
            made_pending.append(held[0].id)
        return made_pending

    # deliveries
    async def add_deliveries(
        self, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> None:
        for delivery in deliveries:
            self._deliveries[delivery.id] = delivery
            if delivery.ordering_key is not None:
                self._order[delivery.id] = next(self._next_order)
            elif lease is not None:  # an ordered one is never held at commit: claims order it
                self._leases[delivery.id] = lease

    def _heads(self) -> dict[str, int]:
        """Per ordering key, the place of its first pending delivery (the only one that
        may be claimed)."""
        heads: dict[str, int] = {}
        for d in self._deliveries.values():
            if d.ordering_key is not None and d.status == "pending":
                place = self._order[d.id]
                if place < heads.get(d.ordering_key, place + 1):
                    heads[d.ordering_key] = place
        return heads

    def _due(self, now: float) -> list[Delivery]:
        heads = self._heads()
        return [
            d
            for d in self._deliveries.values()
            if d.status == "pending"
            and d.next_attempt_at is not None
            and d.next_attempt_at <= now
            and self._free(d.id, now)
            and (d.ordering_key is None or heads[d.ordering_key] == self._order[d.id])
        ]

    def _free(self, delivery_id: str, now: float) -> bool:
        lease = self._leases.get(delivery_id)
        return lease is None or lease.until <= now

    def _holds(self, delivery_id: str, token: str) -> bool:
        lease = self._leases.get(delivery_id)
        delivery = self._deliveries.get(delivery_id)
        return (
            lease is not None
            and lease.token == token
            and delivery is not None
            and delivery.status == "pending"
        )

    async def has_due(self, now: float) -> bool:
        return bool(self._due(now))

    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        skip = set(skip_hosts)
        due = sorted(
            (d for d in self._due(now) if not skip or delivery_host(d.url) not in skip),
            key=lambda d: (d.next_attempt_at or 0.0, d.id),
        )[:limit]
        for delivery in due:
            self._leases[delivery.id] = lease
        return due

    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        renewed = [i for i, token in held.items() if self._holds(i, token)]
        for delivery_id in renewed:
            self._leases[delivery_id] = Lease(held[delivery_id], lease_until)
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
            return False
        delivery = self._deliveries[delivery_id]
        self._deliveries[delivery_id] = dataclasses.replace(
            delivery,
            status=status,
            next_attempt_at=next_attempt_at,
            attempt_count=delivery.attempt_count + 1,
            attempts=(*delivery.attempts, attempt),
        )
        self._leases.pop(delivery_id, None)
        return True

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return self._deliveries.get(delivery_id)

    async def list_deliveries(
        self, flt: DeliveryFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]:
        rows = [
            d
            for d in self._deliveries.values()
            if (flt.status is None or d.status == flt.status)
            and (flt.target_id is None or d.target_id == flt.target_id)
            and (flt.rule_id is None or d.rule_id == flt.rule_id)
            and (flt.event_id is None or d.event_id == flt.event_id)
            and (flt.since is None or d.created_at >= flt.since)
            and (cursor is None or d.id < cursor)
        ]
        rows.sort(key=lambda d: d.id, reverse=True)
        page = rows[:limit]
        return Page(page, page[-1].id if len(rows) > limit else None)

    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        return sorted(
            (d for d in self._deliveries.values() if d.event_id == event_id), key=lambda d: d.id
        )

    async def requeue(self, delivery_ids: Sequence[str], now: float) -> int:
        count = 0
        for delivery_id in delivery_ids:
            delivery = self._deliveries.get(delivery_id)
            if delivery is None:
                continue
            self._deliveries[delivery_id] = dataclasses.replace(
                delivery, status="pending", next_attempt_at=now
            )
            self._leases.pop(delivery_id, None)
            if delivery.ordering_key is not None and delivery.status != "pending":
                # a manual retry of a finished delivery joins the back of its key
                self._order[delivery_id] = next(self._next_order)
            count += 1
        return count

    async def cancel(self, delivery_ids: Sequence[str]) -> list[str]:
        cancelled: list[str] = []
        for delivery_id in delivery_ids:
            delivery = self._deliveries.get(delivery_id)
            if delivery is None or delivery.status != "pending":
                continue
            self._deliveries[delivery_id] = dataclasses.replace(
                delivery, status="cancelled", next_attempt_at=None
            )
            self._leases.pop(delivery_id, None)
            cancelled.append(delivery_id)
        return cancelled

    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        if not self._holds(delivery_id, lease_token):
            return False
        delivery = self._deliveries[delivery_id]
        self._deliveries[delivery_id] = dataclasses.replace(delivery, next_attempt_at=until)
        del self._leases[delivery_id]
        return True

    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        return self._slots.take(key, rate, burst, now)

    async def release(self, held: Mapping[str, str]) -> None:
        for delivery_id, token in held.items():
            if self._holds(delivery_id, token):
                del self._leases[delivery_id]

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        kept: list[str] = []
        for delivery_id, token in held.items():
            if not self._holds(delivery_id, token):
                continue
            delivery = self._deliveries[delivery_id]
            target = self._targets.get(delivery.target_id or "")
            if (
                target is not None
                and target.status == "disabled"
                and target.probe_delivery_id != delivery_id
            ):
                self._set(delivery, "held", None)
                kept.append(delivery_id)
            else:
                del self._leases[delivery_id]
        return kept

    async def failed_since(self, since: float, target_id: str | None = None) -> list[str]:
        return sorted(
            d.id
            for d in self._deliveries.values()
            if d.status == "failed"
            and d.created_at >= since
            and (target_id is None or d.target_id == target_id)
        )

    async def count_pending(self) -> int:
        return sum(1 for d in self._deliveries.values() if d.status == "pending")

    async def prune(self, events_before: float, idempotency_before: float) -> int:
        old = [e.id for e in self._events.values() if e.received_at < events_before]
        for event_id in old:
            del self._events[event_id]
        gone = set(old)
        for delivery_id, d in list(self._deliveries.items()):
            if d.event_id in gone and d.status not in ("pending", "held"):
                del self._deliveries[delivery_id]
                self._order.pop(delivery_id, None)
        for key, event_id in list(self._idempotency.items()):
            event = self._events.get(event_id)
            if event is None or event.received_at < idempotency_before:
                del self._idempotency[key]
        return len(old)
