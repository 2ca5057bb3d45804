"""Prometheus metrics without a client library: counters, gauges and one histogram shape.

Kept deliberately small: the gateway exposes a handful of series (docs/design.md §8) and the hot
path only ever increments a counter keyed by a tuple.

With `server.workers > 1` every uvicorn worker is its own process, and a scrape reaches
one of them. Each then keeps its numbers in a file of doubles mapped into memory
(`<dir>/<pid>.values`, its series named in `<dir>/<pid>.keys`), and a scrape sums the
files of every process of the group, the dead ones' included, so counters never go back.
Hand-written rather than prometheus_client's multiprocess mode for the hot path's sake:
one shared increment costs 178 ns (147 ns in-process) against 1027 ns for a
prometheus_client multiprocess child and 2691 ns with its `labels()` lookup (medians of 3
runs of `python bench/metrics_increment.py`, AMD EPYC, 2 cores).
"""

from __future__ import annotations

import bisect
import contextlib
import math
import mmap
import os
from collections.abc import Callable, MutableSequence
from pathlib import Path
from typing import cast

import orjson

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


Key = tuple[str, Labels]
HIST_SLOTS = len(LATENCY_BUCKETS) + 2  # the buckets, +Inf, the sum
INITIAL_SLOTS = 1024


class _SharedValues:
    """This process's slots as a file of doubles mapped into memory, grown by doubling."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        self._fd = os.open(directory / f"{pid}.values", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        self._keys = os.open(
            directory / f"{pid}.keys", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        )
        self.slots = 0
        self._map: mmap.mmap | None = None
        self.view: memoryview[float] = memoryview(b"").cast("d")
        self.grow(INITIAL_SLOTS)

    def grow(self, slots: int) -> None:
        os.ftruncate(self._fd, slots * 8)
        mapped = mmap.mmap(self._fd, slots * 8)
        old_view, old_map = self.view, self._map
        self.view, self._map, self.slots = memoryview(mapped).cast("d"), mapped, slots
        old_view.release()
        if old_map is not None:
            old_map.close()

    def close(self) -> None:
        self.view.release()
        if self._map is not None:
            self._map.close()
        os.close(self._fd)
        os.close(self._keys)

    def name(self, kind: str, key: Key, index: int) -> None:
        """Record which series `index` holds; after the slot exists, so a reader that sees
        the line finds the slot (one O_APPEND write: never interleaved)."""
        os.write(self._keys, orjson.dumps([kind, key[0], key[1], index]) + b"\n")


def _read_group(directory: Path) -> tuple[dict[Key, float], dict[Key, list[float]]]:
    """Every process's counters and histograms in `directory`, summed."""
    counters: dict[Key, float] = {}
    hists: dict[Key, list[float]] = {}
    for keys_path in directory.glob("*.keys"):
        try:
            lines = keys_path.read_bytes().split(b"\n")[:-1]  # the last one may be partial
            raw = keys_path.with_suffix(".values").read_bytes()
        except OSError:
            continue
        values = memoryview(raw[: len(raw) // 8 * 8]).cast("d")
        for line in lines:
            kind, name, labels, index = orjson.loads(line)
            key = (name, tuple((k, v) for k, v in labels))
            if kind == "c":
                if index < len(values):
                    counters[key] = counters.get(key, 0.0) + values[index]
            elif index + HIST_SLOTS <= len(values):
                total = hists.setdefault(key, [0.0] * HIST_SLOTS)
                for i in range(HIST_SLOTS):
                    total[i] += values[index + i]
    return counters, hists


class Metrics:
    """One registry per app instance (no module-level state).

    `shared_dir`: the directory of a process group whose totals a scrape reports (see the
    module docstring); None keeps everything in this process.
    """

    def __init__(self, shared_dir: str | os.PathLike[str] | None = None) -> None:
        self._slots: dict[Key, int] = {}
        self._hist: dict[Key, int] = {}  # first of the histogram's HIST_SLOTS slots
        self._gauges: dict[str, Callable[[], float]] = {}
        self._used = 0
        self._dir = Path(shared_dir) if shared_dir is not None else None
        self._shared = _SharedValues(self._dir) if self._dir is not None else None
        self._values: MutableSequence[float] = (
            cast("MutableSequence[float]", self._shared.view)
            if self._shared is not None
            else [0.0] * INITIAL_SLOTS
        )

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self.count((name, tuple(sorted(labels.items()))), value)

    def count(self, key: Key, value: float = 1.0) -> None:
        """`inc` for hot paths: the caller builds the key, labels in sorted order."""
        index = self._slots.get(key)
        if index is None:
            index = self._allocate(key, "c")
        self._values[index] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Mirror a counter kept elsewhere (this process's SQLite writer) at its current
        total; the group's scrape sums each process's."""
        key = (name, tuple(sorted(labels.items())))
        index = self._slots.get(key)
        if index is None:
            index = self._allocate(key, "c")
        self._values[index] = value

    def value(self, name: str, **labels: str) -> float:
        """This process's own count (not the group's)."""
        index = self._slots.get((name, tuple(sorted(labels.items()))))
        return 0.0 if index is None else self._values[index]

    def total(self, name: str, **match: str) -> float:
        """Counter `name` summed over every label set that includes `match`: the process
        group's totals when the counters are shared (what a scrape would add up)."""
        counters, _ = self._snapshot()
        wanted = match.items()
        return sum(
            value
            for (metric, labels), value in counters.items()
            if metric == name and all(item in labels for item in wanted)
        )

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time (by the scraped process: the gauges are
        the same for every process of a group, the rule set and the store's queue)."""
        self._gauges[name] = read

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        base = self._hist.get(key)
        if base is None:
            base = self._allocate(key, "h")
        values = self._values
        values[base + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        values[base + HIST_SLOTS - 1] += seconds

    def _allocate(self, key: Key, kind: str) -> int:
        width = HIST_SLOTS if kind == "h" else 1
        index = self._used
        self._used += width
        if self._used > len(self._values):
            slots = max(self._used, 2 * len(self._values))
            if self._shared is not None:
                self._shared.grow(slots)
                self._values = cast("MutableSequence[float]", self._shared.view)
            else:
                assert isinstance(self._values, list)
                self._values.extend([0.0] * (slots - len(self._values)))
        if self._shared is not None:
            self._shared.name(kind, key, index)
        (self._hist if kind == "h" else self._slots)[key] = index
        return index

    def _snapshot(self) -> tuple[dict[Key, float], dict[Key, list[float]]]:
        if self._dir is not None:
            with contextlib.suppress(OSError):
                return _read_group(self._dir)
        values = self._values
        counters = {key: values[i] for key, i in self._slots.items()}
        hists = {key: list(values[i : i + HIST_SLOTS]) for key, i in self._hist.items()}
        return counters, hists

    def render(self) -> str:
        counters, hists = self._snapshot()
        lines: list[str] = []
        names = sorted({k[0] for k in counters} | set(self._gauges) | {k[0] for k in hists})
        for name in names:
            kind, help_text = HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for (n, labels), v in sorted(counters.items()):
                if n == name:
                    lines.append(f"{name}{_fmt(labels)} {_num(v)}")
            if name in self._gauges:
                try:
                    lines.append(f"{name} {_num(self._gauges[name]())}")
                except Exception:  # a gauge that cannot be read is left out of this scrape
                    lines.pop()
                    lines.pop()
                    continue
            for (n, labels), counts in sorted(hists.items()):
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

    def close(self) -> None:
        """Unmap this process's file (it stays: its counts remain part of the group's)."""
        if self._shared is not None:
            self._values = [self._values[i] for i in range(self._used)]
            self._shared.close()
            self._shared = None


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
