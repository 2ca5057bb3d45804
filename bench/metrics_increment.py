"""Per-increment cost of one labelled counter: `gateway.observability.metrics` in-process and shared
(the `server.workers > 1` files), against prometheus_client's multiprocess mode.

    python bench/metrics_increment.py
"""

from __future__ import annotations

import os
import tempfile
import timeit

from gateway.observability.metrics import Metrics

N = 1_000_000
KEY = ("hookgate_events_total", (("app", "app_1"), ("outcome", "202")))


def per_call_ns(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9  # type: ignore[arg-type]


def main() -> None:
    local = Metrics()
    shared = Metrics(tempfile.mkdtemp(prefix="bench-metrics-"))
    results = {
        "hookgate_local_ns": per_call_ns(lambda: local.count(KEY), N),
        "hookgate_shared_ns": per_call_ns(lambda: shared.count(KEY), N),
    }
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prom-")
    from prometheus_client import Counter

    counter = Counter("hookgate_events", "Ingest requests.", ["app", "outcome"])
    child = counter.labels(app="app_1", outcome="202")
    results["prometheus_multiprocess_child_ns"] = per_call_ns(child.inc, N // 10)
    results["prometheus_multiprocess_labels_ns"] = per_call_ns(
        lambda: counter.labels(app="app_1", outcome="202").inc(), N // 10
    )
    for name, value in results.items():
        print(f"{name}={value:.0f}")


if __name__ == "__main__":
    main()
