"""Durations as operators write them in rule files and on the command line.

One parser for every place that takes a span of time (`delay = "2h"` on an action,
`reenable_after`, `--since 7d`), so "90s" means the same everywhere.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a non-negative number of seconds, or a string like "90s", "15m",
    "2h", "7d", "1w", "250ms" (a bare number string is seconds).

    Raises ValueError with a message fit for a rule-load error or a 422 answer.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90s, 15m, 2h or 7d, got {value!r}")
    if isinstance(value, int | float):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 90s, 15m, 2h or 7d, got {value!r}")
    found = _PATTERN.match(value)
    if found is None:
        raise ValueError(f"expected a duration such as 90s, 15m, 2h or 7d, got {value!r}")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]
