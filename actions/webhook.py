"""The `webhook` action: POST a rendered template, or the standard envelope of docs/design.md §6."""

from __future__ import annotations

import orjson

from actions.event import EventInfo, rfc3339
from actions.model import Delivery


def envelope(event: EventInfo) -> bytes:
    """`{"id", "type", "timestamp", "app", "data"}` with `data` spliced in byte for byte, so
    the receiver sees the event exactly as the sender posted it."""
    head = orjson.dumps(
        {
            "id": event.id,
            "type": event.type,
            "timestamp": rfc3339(event.received_at),
            "app": event.app,
        }
    )
    return head[:-1] + b',"data":' + event.payload.strip() + b"}"


class WebhookAction:
    name = "webhook"
    default_retry = "standard"

    def needs_event(self, delivery: Delivery) -> bool:
        return delivery.body is None  # a rule's rendered body needs nothing more

    def body(self, delivery: Delivery, event: EventInfo | None) -> bytes:
        if delivery.body is not None:
            return delivery.body
        if event is None:
            raise LookupError("the event behind this delivery is gone")
        return envelope(event)
