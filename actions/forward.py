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

    def body(self, delivery: Delivery, event: EventInfo | None) -> bytes:
        if event is None:
            raise LookupError("the event behind this delivery is gone")
        if event.type is None:
            return event.payload
        payload = orjson.loads(event.payload)
        if "eventType" in payload:
            return event.payload
        payload["eventType"] = event.type
        return orjson.dumps(payload)
