"""Sortable record ids: prefix + 48-bit millisecond timestamp + 80 random bits, in
Crockford base32 (the ULID layout), so `ORDER BY id` is creation order and a list cursor
is just the last id seen. A delivery's id doubles as its Standard Webhooks `webhook-id`,
the same on every retry.

Ids are made on the ingest hot path (two per event): the time part is encoded once per
millisecond, and the random part is 16 bytes from `random` mapped onto the alphabet in C,
not a `getrandom` system call per id (ids must be unique, not secret; tokens are the
secrets, and they come from `secrets`). 0.43 µs an id, against 1.2 µs for 13 pair lookups.
"""

from __future__ import annotations

import functools
import random
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of characters, indexed by the 10 bits it encodes: 13 lookups per value.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
# Byte -> the character of its low 5 bits: 16 random bytes make the 16 characters (80 bits)
# of an id's random part in two C calls.
_RANDOM_CHARS = bytes.maketrans(bytes(range(256)), _ALPHABET.encode() * 8)


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


@functools.lru_cache(maxsize=1)
def _time_chars(ms: int) -> str:
    """An id's first 10 characters encode only its millisecond (2 pad bits + 48 time bits),
    so ids made within one millisecond share them: encoded once per millisecond."""
    return _encode(ms << 80)[:10]


def sortable_id(prefix: str, now: float | None = None) -> str:
    """`prefix` + 26 characters; lexicographic order follows creation time (ms)."""
    ms = int((time.time() if now is None else now) * 1000)
    return prefix + _time_chars(ms) + random.randbytes(16).translate(_RANDOM_CHARS).decode()


def id_floor(prefix: str, at: float) -> str:
    """The smallest id that could have been created at epoch second `at` (for `since=`)."""
    return prefix + _encode(max(0, int(at * 1000)) << 80)


def delivery_id(now: float | None = None) -> str:
    return sortable_id("dlv_", now)
