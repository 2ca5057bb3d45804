"""Wiring between the store and the `actions` dispatcher, shared by the server (inline
delivery) and the delivery worker process: the HTTP client, dispatch settings, and the
adapter that lets the dispatcher read and write delivery rows."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from actions import (
    AddressPolicy,
    Attempt,
    ClientSettings,
    Delivery,
    DeliveryClient,
    DeliveryStatus,
    DispatchSettings,
    EventInfo,
    Lease,
    TargetInfo,
)
from gateway.config import Settings
from gateway.delivery.alerts import INTERNAL_APP, INTERNAL_APP_ID, Alerts
from gateway.models import WebhookTarget
from gateway.store import Store
from gateway.version import __version__

log = logging.getLogger("hookgate.delivery")


def address_policy(settings: Settings) -> AddressPolicy:
    """The SSRF guard's policy from `delivery.allow_private_targets` and `allowed_networks`."""
    delivery = settings.delivery
    return AddressPolicy.build(delivery.allow_private_targets, delivery.allowed_networks)


def build_http_client(settings: Settings) -> DeliveryClient:
    """The one client every delivery of this process goes through: an aiohttp session
    with connection limits from config and the SSRF guard as its resolver (each attempt is
    bounded by `delivery.timeout_seconds` or its rule's timeout, in the sender)."""
    delivery = settings.delivery
    return DeliveryClient(
        ClientSettings(
            concurrency=delivery.concurrency,
            per_host_concurrency=delivery.per_host_concurrency,
            policy=address_policy(settings),
        )
    )


def dispatch_settings(settings: Settings) -> DispatchSettings:
    delivery = settings.delivery
    return DispatchSettings(
        timeout_seconds=delivery.timeout_seconds,
        concurrency=delivery.concurrency,
        per_host_concurrency=delivery.per_host_concurrency,
        poll_seconds=delivery.poll_seconds,
        lease_seconds=delivery.lease_seconds,
        max_queued_per_host=delivery.max_queued_per_host,
        user_agent=f"hookgate/{__version__}",
    )


async def probe_held_targets(
    store: Store, now: float, *, refresh: Callable[[], Awaitable[Any]], wake: Callable[[], None]
) -> list[str]:
    """One step of held deliveries (`Store.probe_targets`): start due probes, release what
    an active target still has held. Run every `delivery.poll_seconds` by each server and
    standalone worker; the store makes concurrent steps safe. The targets view is
    refreshed before the dispatchers are woken, so the one that claims a probe knows it
    is one (and sends it instead of holding it again)."""
    made = await store.probe_targets(now)
    if made:
        await refresh()
        wake()
    return made


class StoreSource:
    """The store as a `DeliverySource`, with in-memory views of targets and app names
    kept fresh by whoever owns them (the rule state in the server, the worker's poller)."""

    def __init__(
        self,
        store: Store,
        *,
        targets: Callable[[], Mapping[str, WebhookTarget]],
        app_name: Callable[[str], str],
        on_target_disabled: Callable[[], Awaitable[Any]] | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self._store = store
        self._targets = targets
        self._names = app_name
        self._on_target_disabled = on_target_disabled
        self._alerts = alerts
        # Targets whose last delivery to fail for good carried an internal event: the
        # outcome that follows (the dispatcher records a final attempt, then its target's
        # outcome) disables them without an alert (no loops). Kept per target, because a
        # worker's finish and outcome are separate requests that other deliveries' finishes
        # can come between.
        self._quiet_targets: set[str] = set()

    def _app_name(self, app_id: str) -> str:
        return INTERNAL_APP if app_id == INTERNAL_APP_ID else self._names(app_id)

    async def has_due(self, now: float) -> bool:
        return await self._store.has_due(now)

    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        return await self._store.claim_due(now, limit, lease, skip_hosts)

    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        return await self._store.renew(held, lease_until)

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
        recorded = await self._store.finish_attempt(
            delivery_id, attempt, status, next_attempt_at, lease_token
        )
        internal = (
            recorded
            and status == "failed"
            and self._alerts is not None
            and await self._alerts.delivery_failed(delivery_id)
        )
        if internal:
            delivery = await self._store.get_delivery(delivery_id)
            if delivery is not None and delivery.target_id is not None:
                self._quiet_targets.add(delivery.target_id)
        return recorded

    async def release(self, held: Mapping[str, str]) -> None:
        await self._store.release(held)

    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        return await self._store.defer(delivery_id, lease_token, until)

    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        return await self._store.take_delivery_slot(key, rate, burst, now)

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        return await self._store.hold(held)

    async def event_infos(self, event_ids: list[str]) -> list[EventInfo]:
        """Several events in one store round trip (for deliveries claimed together)."""
        return [
            EventInfo(e.id, e.event_type, self._app_name(e.app_id), e.received_at, e.payload)
            for e in await self._store.get_events(event_ids)
        ]

    async def event_info(self, event_id: str) -> EventInfo | None:
        event = await self._store.get_event(event_id)
        if event is None:
            return None
        return EventInfo(
            event.id,
            event.event_type,
            self._app_name(event.app_id),
            event.received_at,
            event.payload,
        )

    async def target(self, target_id: str) -> TargetInfo | None:
        target = self._targets().get(target_id)
        if target is None:
            # Newer than the in-memory view (created a moment ago, maybe by another
            # process): the store has the last word.
            target = await self._store.get_target(target_id)
        if target is None:
            return None
        return TargetInfo(
            target.secret,
            target.status == "active",
            target.disable_after,
            target.rate,
            target.burst,
            target.probe_delivery_id,
        )

    async def target_outcome(
        self, target_id: str, ok: bool, disable_after: int | None, gone: bool
    ) -> None:
        before = self._targets().get(target_id)
        quiet = target_id in self._quiet_targets
        self._quiet_targets.discard(target_id)
        updated = await self._store.record_target_outcome(target_id, ok, disable_after, gone)
        if updated is None:
            return
        was_active = before is None or before.status == "active"
        if updated.status != "active" and was_active:
            if self._alerts is not None and not quiet:
                await self._alerts.target_disabled(updated)
            log.warning(
                "webhook target disabled",
                extra={"fields": {"target_id": target_id, "gone": gone}},
            )
        elif updated.status == "active" and not was_active:
            log.warning(
                "webhook target enabled again: a probe succeeded; its held deliveries go out",
                extra={"fields": {"target_id": target_id}},
            )
        # Any change of a target's state (disabled, probe rescheduled, enabled again) is
        # seen by ingest and the dispatchers at once, not at their next refresh.
        if (updated.status != "active" or not was_active) and self._on_target_disabled is not None:
            await self._on_target_disabled()
