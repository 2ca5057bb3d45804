"""Action types by name. Adding a type is one class with `name`, `default_retry` and
`needs_event(delivery)` and `body(delivery, event) -> bytes`, plus one line in
`ACTION_TYPES`."""

from __future__ import annotations

from typing import Protocol

from actions.event import EventInfo
from actions.forward import ForwardAction
from actions.model import Delivery
from actions.webhook import WebhookAction


class ActionType(Protocol):
    name: str
    default_retry: str  # policy when the rule does not say: "none" | "standard"

    def needs_event(self, delivery: Delivery) -> bool:
        """Whether `body` reads the stored event (so a worker fetches it first)."""
        ...

    def body(self, delivery: Delivery, event: EventInfo | None) -> bytes:
        """The request body to POST; raise LookupError if the event it needs is gone."""
        ...


def needs_event(delivery: Delivery) -> bool:
    """Whether sending `delivery` reads its event; an unknown type reads nothing."""
    action = ACTION_TYPES.get(delivery.action_type)
    return action is not None and action.needs_event(delivery)


ACTION_TYPES: dict[str, ActionType] = {
    WebhookAction.name: WebhookAction(),
    ForwardAction.name: ForwardAction(),
}
