"""What the sender needs to know about the event behind a delivery."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventInfo:
    """The stored event as action types see it: raw body bytes plus its identity."""

    id: str
    type: str | None
    app: str  # the app's name, as the envelope's "app" field
    received_at: float
    payload: bytes  # the body as received, byte for byte


def rfc3339(epoch: float) -> str:
    """UTC timestamp with millisecond precision, e.g. 2026-11-23T10:00:00.123Z."""
    whole = int(epoch)
    millis = round((epoch - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
