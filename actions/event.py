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
    """UTC timestamp with millisecond precision, e.g. 2026-11-23T10:00:00.123Z.

    Truncated, not rounded, so that `since=<a record's time>` still includes that record.
    """
    millis_total = int(epoch * 1000)
    whole, millis = divmod(millis_total, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
