"""Delivery rate limits: the check of `rate` and `burst` shared by rule files and the API.

A rate limit is scheduling, not filtering: deliveries over it wait (see docs/design.md).
The values are checked here once so `hookgate rules check` and `POST /v1/targets` refuse
the same spellings with the same sentence.
"""

from __future__ import annotations

import math
from typing import Any

MAX_RATE = 1_000_000.0  # one per microsecond: the resolution of the Redis bucket


def default_burst(rate: float) -> int:
    """The burst a rate gets when none is given: one second's worth, at least one."""
    return max(1, math.ceil(rate))


def rate_problem(rate: Any) -> str | None:
    """Why `rate` (deliveries per second) is not acceptable, or None."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not math.isfinite(rate)
        or not 0 < rate <= MAX_RATE
    ):
        return f"must be a number of deliveries per second > 0 and <= {MAX_RATE:g}, got {rate!r}"
    return None


def burst_problem(burst: Any) -> str | None:
    """Why `burst` (deliveries sent at once before the rate applies) is not acceptable."""
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
        return f"must be an integer >= 1 and <= 1000000, got {burst!r}"
    return None
