"""Retry policies: how long to wait before each retry of a failed delivery.

A policy is only its delays, so a `Delivery` snapshots `policy.delays` at ingest and the
dispatcher needs nothing else to reschedule it: `next_attempt_at` is pure arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from actions.errors import ActionError

# Bounds on custom lists, so a typo or an API client cannot queue a delivery for years or
# keep it retrying thousands of times.
MAX_RETRIES = 25
MAX_DELAY_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A named list of waits: `delays[i]` is the wait before retry i+1 after a failure.

    `len(delays) + 1` attempts in all; `()` means a single, best-effort attempt.
    """

    name: str  # "none", "standard" or "custom"
    delays: tuple[float, ...]

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


NONE = RetryPolicy("none", ())
# First attempt immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts.
STANDARD = RetryPolicy("standard", (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0))
_NAMED = {policy.name: policy for policy in (NONE, STANDARD)}


def parse_retry(value: str | Sequence[float]) -> RetryPolicy:
    """The policy a rule file or the API spelled: `"none"`, `"standard"` or a list of seconds.

    An empty list is the same as `"none"`. Raises `ActionError` naming what was wrong.
    """
    if isinstance(value, str):
        policy = _NAMED.get(value.strip().lower())
        if policy is None:
            raise ActionError(
                f"unknown retry policy {value!r}: expected 'none', 'standard' "
                "or a list of delays in seconds"
            )
        return policy
    if not isinstance(value, Sequence):
        raise ActionError(
            f"retry must be 'none', 'standard' or a list of delays in seconds, "
            f"got {type(value).__name__}"
        )
    if len(value) > MAX_RETRIES:
        raise ActionError(f"retry lists at most {MAX_RETRIES} delays, got {len(value)}")
    delays: list[float] = []
    for number, delay in enumerate(value, start=1):
        # bool is an int subclass; `true` in a rule file is a mistake, not a 1 s delay.
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise ActionError(f"retry delay #{number} must be a number of seconds, got {delay!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ActionError(f"retry delay #{number} must be a finite number >= 0, got {delay}")
        if delay > MAX_DELAY_SECONDS:
            raise ActionError(
                f"retry delay #{number} is {delay:g} s; "
                f"at most 7 days ({MAX_DELAY_SECONDS:g} s) is allowed"
            )
        delays.append(float(delay))
    if not delays:
        return NONE
    return RetryPolicy("custom", tuple(delays))


def next_attempt_at(
    delays: Sequence[float],
    attempts_made: int,
    now: float,
    retry_after: float | None = None,
) -> float | None:
    """When to try again after `attempts_made` attempts, the last of which failed at `now`.

    None when the policy is exhausted. A receiver's `Retry-After` (seconds) pushes the next
    attempt to at least that long from now, never earlier than the policy's own delay.
    With no attempt made yet, the first one is due at once.
    """
    if attempts_made < 0:
        raise ValueError(f"attempts_made must be >= 0, got {attempts_made}")
    if attempts_made == 0:
        return now
    retry_index = attempts_made - 1
    if retry_index >= len(delays):
        return None
    wait = delays[retry_index]
    if retry_after is not None and math.isfinite(retry_after) and retry_after > wait:
        # Honoured, but only up to the longest delay a policy may name: a receiver cannot
        # park a delivery for years.
        wait = min(retry_after, MAX_DELAY_SECONDS)
    return now + wait
