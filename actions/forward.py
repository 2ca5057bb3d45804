"""The `forward` action: POST the event as received, adding `eventType` when absent.

This is the Chekkit-style messaging webhook: the downstream CRM gets the very body the
sender posted, and can route on `eventType` even when the sender called it `type`.
"""

from __future__ import annotations

import orjson

from actions.event import EventInfo
from actions.model import Delivery


class ForwardAction:
    name = "forward"
    default_retry = "none"

    def needs_event(self, delivery: Delivery) -> bool:
        return True  # the body is the event as received

    def body(self, delivery: Delivery, event: EventInfo | None) -> bytes:
        if event is None:
            raise LookupError("the event behind this delivery is gone")
        if event.type is None:
            return event.payload
        if "eventType" in orjson.loads(event.payload):
            return event.payload
        # Spliced in after the opening brace rather than re-encoded, so every byte the
        # sender wrote (spacing, escapes, number spellings) reaches the receiver unchanged.
        raw = event.payload.strip()
        member = b'"eventType":' + orjson.dumps(event.type)
        separator = b"" if raw[1:].lstrip().startswith(b"}") else b","
        return b"{" + member + separator + raw[1:]
