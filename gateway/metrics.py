"""Prometheus metrics without a client library: counters, gauges and one histogram shape.

Kept deliberately small: the gateway exposes a handful of series (docs/design.md §8) and the hot
path only ever increments a counter keyed by a tuple.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

HELP = {
    "hookgate_events_total": ("counter", "Ingest requests by app and outcome."),
    "hookgate_rate_limited_total": ("counter", "429 answers by scope (app, global, guard)."),
    "hookgate_ratelimit_redis_errors_total": (
        "counter",
        "Redis failures while checking rate limits (served by the fallback).",
    ),
    "hookgate_deliveries_total": ("counter", "Delivery attempts by outcome."),
    "hookgate_delivery_latency_seconds": ("histogram", "Outbound delivery latency."),
    "hookgate_delivery_queue_depth": ("gauge", "Pending deliveries."),
    "hookgate_rules_loaded": ("gauge", "Rules in the active rule set."),
    "hookgate_rule_reload_errors_total": ("counter", "Rule reloads that failed validation."),
    "hookgate_store_commits_total": ("counter", "Transactions the SQLite writer committed."),
    "hookgate_store_writes_total": (
        "counter",
        "Writes the SQLite writer committed (writes per commit: the group-commit factor).",
    ),
}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """One registry per app instance (no module-level state)."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._hist: dict[tuple[str, Labels], list[float]] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self._counters[key] = self._counters.get(key, 0.0) + value

    def count(self, key: tuple[str, Labels], value: float = 1.0) -> None:
        """`inc` for hot paths: the caller builds the key, labels in sorted order."""
        self._counters[key] = self._counters.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Mirror a counter kept elsewhere (another process) at its current total."""
        self._counters[(name, tuple(sorted(labels.items())))] = value

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time."""
        self._gauges[name] = read

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        counts = self._hist.get(key)
        if counts is None:
            counts = self._hist[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)  # buckets, +Inf, sum
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def render(self) -> str:
        lines: list[str] = []
        names = sorted(
            {k[0] for k in self._counters} | set(self._gauges) | {k[0] for k in self._hist}
        )
        for name in names:
            kind, help_text = HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for (n, labels), v in sorted(self._counters.items()):
                if n == name:
                    lines.append(f"{name}{_fmt(labels)} {_num(v)}")
            if name in self._gauges:
                try:
                    lines.append(f"{name} {_num(self._gauges[name]())}")
                except Exception:  # a gauge that cannot be read is left out of this scrape
                    lines.pop()
                    lines.pop()
                    continue
            for (n, labels), counts in sorted(self._hist.items()):
                if n != name:
                    continue
                cumulative = 0.0
                for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
                    cumulative += count
                    lines.append(
                        f"{name}_bucket{_fmt((*labels, ('le', f'{bound:g}')))} {_num(cumulative)}"
                    )
                cumulative += counts[len(LATENCY_BUCKETS)]
                lines.append(f"{name}_bucket{_fmt((*labels, ('le', '+Inf')))} {_num(cumulative)}")
                lines.append(f"{name}_sum{_fmt(labels)} {_num(counts[-1])}")
                lines.append(f"{name}_count{_fmt(labels)} {_num(cumulative)}")
        return "\n".join(lines) + "\n"


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    """Label value escaping of the text format: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    """A sample value, exactly: `:g` keeps 6 digits, so 1234567 would read 1.23457e+06."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
