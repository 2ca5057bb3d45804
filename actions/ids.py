"""Sortable record ids: prefix + 48-bit millisecond timestamp + 80 random bits, in
Crockford base32 (the ULID layout), so `ORDER BY id` is creation order and a list cursor
is just the last id seen. A delivery's id doubles as its Standard Webhooks `webhook-id`,
the same on every retry.

Ids are made on the ingest hot path: encoding is 13 table lookups, and the random part
comes from `random.getrandbits`, not a `getrandom` system call per id (ids must be unique,
not secret; tokens are the secrets, and they come from `secrets`).
"""

from __future__ import annotations

import random
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of characters, indexed by the 10 bits it encodes: 13 lookups per id.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)


def _encode(value: int) -> str:
    """26 Crockford characters for a 128-bit value, right-aligned in 130 bits (ULID)."""
    p = _PAIRS
    return (
        p[value >> 120 & 1023] + p[value >> 110 & 1023] + p[value >> 100 & 1023]
        + p[value >> 90 & 1023] + p[value >> 80 & 1023] + p[value >> 70 & 1023]
        + p[value >> 60 & 1023] + p[value >> 50 & 1023] + p[value >> 40 & 1023]
        + p[value >> 30 & 1023] + p[value >> 20 & 1023] + p[value >> 10 & 1023]
        + p[value & 1023]
    )  # fmt: skip


def sortable_id(prefix: str, now: float | None = None) -> str:
    """`prefix` + 26 characters; lexicographic order follows creation time (ms)."""
    ms = int((time.time() if now is None else now) * 1000)
    return prefix + _encode((ms << 80) | random.getrandbits(80))


def id_floor(prefix: str, at: float) -> str:
    """The smallest id that could have been created at epoch second `at` (for `since=`)."""
    return prefix + _encode(max(0, int(at * 1000)) << 80)


def delivery_id(now: float | None = None) -> str:
    return sortable_id("dlv_", now)
