"""Sortable record ids: prefix + 48-bit millisecond timestamp + 80 random bits, in
Crockford base32 (the ULID layout), so `ORDER BY id` is creation order and a list cursor
is just the last id seen. A delivery's id doubles as its Standard Webhooks `webhook-id`,
the same on every retry."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SHIFTS = range(125, -1, -5)


def _encode(value: int) -> str:
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in _SHIFTS)


def sortable_id(prefix: str, now: float | None = None) -> str:
    """`prefix` + 26 characters; lexicographic order follows creation time (ms)."""
    ms = int((time.time() if now is None else now) * 1000)
    return prefix + _encode((ms << 80) | int.from_bytes(os.urandom(10), "big"))


def id_floor(prefix: str, at: float) -> str:
    """The smallest id that could have been created at epoch second `at` (for `since=`)."""
    return prefix + _encode(max(0, int(at * 1000)) << 80)


def delivery_id(now: float | None = None) -> str:
    return sortable_id("dlv_", now)
