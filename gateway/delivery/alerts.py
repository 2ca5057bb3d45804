"""Failure alerts as events: a delivery that failed for good, or a target switched off,
becomes an event from the reserved app `hookgate` that rules match like any other.

`hookgate.delivery.failed` carries the delivery record (`delivery_json`, with attempts) in
`data`; `hookgate.target.disabled` the target record (`target_json`, without its secret).
So an operator routes alerts with a rule file; only rules that name the app (`apps =
["hookgate"]`) match them, so catch-all rules and webhook targets never receive alerts.
The stored event shows in `/v1/events` like the rest.

No loops: a delivery of an internal event that fails for good emits nothing (its event's
app is `hookgate`); a target disabled by such deliveries emits nothing either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import orjson

from actions import plan_deliveries
from gateway.ids import new_id
from gateway.models import Event, WebhookTarget
from gateway.records.shapes import delivery_json, target_json
from gateway.store import Store
from rules import RuleSet

log = logging.getLogger("hookgate.alerts")

INTERNAL_APP = "hookgate"
"""The reserved app name of internal events; no app can be created with it."""
INTERNAL_APP_ID = "app_hookgate"
"""The `app_id` internal events are stored under (there is no app record)."""
DELIVERY_FAILED = "hookgate.delivery.failed"
TARGET_DISABLED = "hookgate.target.disabled"


class Alerts:
    """Emits internal events through the live rule set into the store."""

    def __init__(
        self,
        store: Store,
        rules: Callable[[], RuleSet],
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._wake = wake

    async def delivery_failed(self, delivery_id: str) -> bool:
        """A delivery failed for good (retries exhausted, or not sendable): emit, unless it
        delivered an internal event. Returns whether it did (so the caller keeps quiet
        about the target it may disable too)."""
        delivery = await self._store.get_delivery(delivery_id)
        if delivery is None:
            return False
        event = await self._store.get_event(delivery.event_id)
        if event is None or event.app_id == INTERNAL_APP_ID:
            return event is not None
        await self.emit(DELIVERY_FAILED, delivery_json(delivery))
        return False

    async def target_disabled(self, target: WebhookTarget) -> None:
        """A target was switched off after consecutive failures (or a 410)."""
        await self.emit(TARGET_DISABLED, target_json(target))

    async def emit(self, event_type: str, record: Mapping[str, object]) -> str | None:
        """Store one internal event with the deliveries its matching rules plan; returns its
        id, or None when it could not be stored (logged: an alert must never break the
        delivery that caused it)."""
        now = time.time()
        payload = {"event_type": event_type, "data": record}
        body = orjson.dumps(payload)
        event_id = new_id("evt_", now)
        try:
            # Only rules that name the app: a catch-all rule (or a webhook target, which
            # has no app list) forwarding "every event" to a CRM must not start receiving
            # hookgate's alerts, nor count them as its failures.
            matches = [
                m
                for m in self._rules().match(INTERNAL_APP, payload, event_type=event_type)
                if INTERNAL_APP in m.rule.apps
            ]
            deliveries = plan_deliveries(matches, event_id, payload, now) if matches else []
            event = Event(
                id=event_id,
                app_id=INTERNAL_APP_ID,
                event_type=event_type,
                received_at=now,
                payload=body,
                matched_rules=tuple(m.rule.id for m in matches),
            )
            await self._store.add_event(event, deliveries)
        except Exception as exc:
            log.error("internal event %s not stored: %s", event_type, exc)
            return None
        if deliveries and self._wake is not None:
            self._wake()
        return event_id
