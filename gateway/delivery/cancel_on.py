"""`cancel_on`: a later event calls off the scheduled deliveries of a delayed action.

An action `delay = "2h"` with `cancel_on = { event_types = ["job_reopened"], match =
"job_id" }` commits its delivery at once, due two hours later. When a `job_reopened`
event arrives from the same app, every not-yet-tried delivery of that rule action whose
own event had the same `job_id` is cancelled, before the new event is answered.

The candidates are read from the store (the rule's pending deliveries, then their events),
so this works across processes and restarts with no extra index; it costs a read only for
events whose type some `cancel_on` names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from actions import Delivery
from gateway.store import DeliveryFilter, Store
from rules import Action, Rule, RuleSet

PAGE = 500


@dataclass(frozen=True, slots=True)
class CancelTrigger:
    """One delayed rule action that an event of some type cancels."""

    rule: Rule
    action: Action


class CancelIndex:
    """Event type -> the delayed actions it cancels, built once per rule set."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.by_type: dict[str, list[CancelTrigger]] = {}
        for rule in ruleset.rules:
            if not rule.enabled:
                continue
            for action in rule.actions:
                if action.cancel_on is None:
                    continue
                for event_type in action.cancel_on.event_types:
                    self.by_type.setdefault(event_type, []).append(CancelTrigger(rule, action))


async def cancel_superseded(
    store: Store,
    index: CancelIndex,
    *,
    app_id: str,
    app_name: str,
    event_type: str | None,
    payload: Any,
    before: float,
) -> list[str]:
    """Cancel the scheduled deliveries that this event (from `app_id`, received at
    `before`) calls off; returns their ids."""
    triggers = index.by_type.get(event_type) if event_type is not None else None
    if not triggers:
        return []
    cancelled: list[str] = []
    for trigger in triggers:
        rule, action = trigger.rule, trigger.action
        cancel_on = action.cancel_on
        if cancel_on is None or (rule.apps and app_name not in rule.apps):
            continue
        wanted = cancel_on.key(payload)
        if wanted is None:
            continue
        candidates: list[Delivery] = []
        cursor: str | None = None
        while True:
            page = await store.list_deliveries(
                DeliveryFilter(status="pending", rule_id=rule.id), cursor=cursor, limit=PAGE
            )
            candidates.extend(
                d
                for d in page.data
                if d.url == action.url and d.attempt_count == 0 and d.created_at < before
            )
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if not candidates:
            continue
        events = {e.id: e for e in await store.get_events([d.event_id for d in candidates])}
        doomed = []
        for delivery in candidates:
            event = events.get(delivery.event_id)
            if event is None or event.app_id != app_id:
                continue
            try:
                original = orjson.loads(event.payload)
            except orjson.JSONDecodeError:
                continue
            if cancel_on.key(original) == wanted:
                doomed.append(delivery.id)
        if doomed:
            cancelled.extend(await store.cancel(doomed))
    return cancelled
