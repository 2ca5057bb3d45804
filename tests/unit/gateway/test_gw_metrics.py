"""Prometheus text rendering: counters with escaped labels, cumulative histograms, gauges."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.observability.metrics import LATENCY_BUCKETS, Metrics


def test_counters_render_sorted_with_help_and_type() -> None:
    metrics = Metrics()
    metrics.inc("hookgate_events_total", app="app_1", outcome="202")
    metrics.inc("hookgate_events_total", 2, app="app_1", outcome="202")
    metrics.inc("hookgate_events_total", outcome="429", app="app_1")
    metrics.inc("hookgate_rate_limited_total", scope="global")
    assert metrics.render() == (
        "# HELP hookgate_events_total Ingest requests by app and outcome.\n"
        "# TYPE hookgate_events_total counter\n"
        'hookgate_events_total{app="app_1",outcome="202"} 3\n'
        'hookgate_events_total{app="app_1",outcome="429"} 1\n'
        "# HELP hookgate_rate_limited_total 429 answers by scope (app, global, guard).\n"
        "# TYPE hookgate_rate_limited_total counter\n"
        'hookgate_rate_limited_total{scope="global"} 1\n'
    )
    assert metrics.value("hookgate_events_total", outcome="202", app="app_1") == 3
    assert metrics.value("hookgate_events_total", app="nobody", outcome="202") == 0


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.inc("hookgate_events_total", app='a"b\\c\nd', outcome="202")
    lines = metrics.render().splitlines()
    assert lines[2] == 'hookgate_events_total{app="a\\"b\\\\c\\nd",outcome="202"} 1'
    assert len(lines) == 3  # the newline did not break the sample in two


def test_an_unlabelled_counter_and_an_unknown_name() -> None:
    metrics = Metrics()
    metrics.inc("hookgate_ratelimit_redis_errors_total")
    metrics.inc("hookgate_custom_total", 0.5)
    assert metrics.render() == (
        "# HELP hookgate_custom_total hookgate_custom_total\n"
        "# TYPE hookgate_custom_total untyped\n"
        "hookgate_custom_total 0.5\n"
        "# HELP hookgate_ratelimit_redis_errors_total Redis failures while checking rate limits"
        " (served by the fallback).\n"
        "# TYPE hookgate_ratelimit_redis_errors_total counter\n"
        "hookgate_ratelimit_redis_errors_total 1\n"
    )


def test_large_counts_are_rendered_exactly() -> None:
    metrics = Metrics()
    metrics.inc("hookgate_events_total", 1_234_567, app="a", outcome="202")
    metrics.inc("hookgate_events_total", 9_007_199_254_740_000, app="b", outcome="202")
    samples = metrics.render().splitlines()[2:]
    assert samples == [
        'hookgate_events_total{app="a",outcome="202"} 1234567',
        'hookgate_events_total{app="b",outcome="202"} 9007199254740000',
    ]


def test_histogram_buckets_are_cumulative() -> None:
    metrics = Metrics()
    for seconds in (0.005, 0.5, 40.0):
        metrics.observe("hookgate_delivery_latency_seconds", seconds)
    lines = metrics.render().splitlines()
    assert lines[:2] == [
        "# HELP hookgate_delivery_latency_seconds Outbound delivery latency.",
        "# TYPE hookgate_delivery_latency_seconds histogram",
    ]
    expected_counts = {
        "0.005": 1,  # a value on a bound counts in that bucket (le = less or equal)
        "0.01": 1,
        "0.025": 1,
        "0.05": 1,
        "0.1": 1,
        "0.25": 1,
        "0.5": 2,
        "1": 2,
        "2.5": 2,
        "5": 2,
        "10": 2,
        "30": 2,
        "+Inf": 3,
    }
    assert len(LATENCY_BUCKETS) + 1 == len(expected_counts)
    assert lines[2:] == [
        *(
            f'hookgate_delivery_latency_seconds_bucket{{le="{le}"}} {count}'
            for le, count in expected_counts.items()
        ),
        "hookgate_delivery_latency_seconds_sum 40.505",
        "hookgate_delivery_latency_seconds_count 3",
    ]


def test_histogram_labels_come_before_le() -> None:
    metrics = Metrics()
    metrics.observe("hookgate_delivery_latency_seconds", 0.2, outcome="ok")
    lines = metrics.render().splitlines()
    assert 'hookgate_delivery_latency_seconds_bucket{outcome="ok",le="0.1"} 0' in lines
    assert 'hookgate_delivery_latency_seconds_bucket{outcome="ok",le="0.25"} 1' in lines
    assert 'hookgate_delivery_latency_seconds_count{outcome="ok"} 1' in lines
    assert 'hookgate_delivery_latency_seconds_sum{outcome="ok"} 0.2' in lines


def test_gauges_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    depth = [5.0]
    metrics.gauge("hookgate_delivery_queue_depth", lambda: depth[0])
    metrics.gauge("hookgate_rules_loaded", lambda: 12.0)
    first = metrics.render()
    depth[0] = 2_500_000.0
    second = metrics.render()
    assert first == (
        "# HELP hookgate_delivery_queue_depth Pending deliveries.\n"
        "# TYPE hookgate_delivery_queue_depth gauge\n"
        "hookgate_delivery_queue_depth 5\n"
        "# HELP hookgate_rules_loaded Rules in the active rule set.\n"
        "# TYPE hookgate_rules_loaded gauge\n"
        "hookgate_rules_loaded 12\n"
    )
    assert "hookgate_delivery_queue_depth 2500000\n" in second


def test_a_gauge_that_cannot_be_read_is_left_out() -> None:
    metrics = Metrics()

    def broken() -> float:
        raise RuntimeError("store closed")

    metrics.gauge("hookgate_delivery_queue_depth", broken)
    metrics.gauge("hookgate_rules_loaded", lambda: 1.0)
    metrics.inc("hookgate_rate_limited_total", scope="app")
    text = metrics.render()
    assert "hookgate_delivery_queue_depth" not in text
    assert "hookgate_rules_loaded 1\n" in text
    assert 'hookgate_rate_limited_total{scope="app"} 1\n' in text


def test_nothing_recorded_renders_an_empty_exposition() -> None:
    assert Metrics().render().strip() == ""


def test_special_values_use_the_text_format_spelling() -> None:
    metrics = Metrics()
    metrics.gauge("hookgate_rules_loaded", lambda: float("inf"))
    metrics.gauge("hookgate_delivery_queue_depth", lambda: float("nan"))
    text = metrics.render()
    assert "hookgate_rules_loaded +Inf\n" in text
    assert "hookgate_delivery_queue_depth NaN\n" in text


def test_a_shared_directory_sums_every_process_of_the_group(tmp_path: Path) -> None:
    """Another process counts into the same directory; this one's render adds it up."""
    child = (
        "import sys\n"
        "from gateway.observability.metrics import Metrics\n"
        "m = Metrics(sys.argv[1])\n"
        "for _ in range(5): m.inc('hookgate_events_total', app='a', outcome='202')\n"
        "m.inc('hookgate_events_total', app='b', outcome='404')\n"
        "m.observe('hookgate_delivery_latency_seconds', 0.2)\n"
        "m.close()\n"
    )
    subprocess.run([sys.executable, "-c", child, str(tmp_path)], check=True)
    metrics = Metrics(tmp_path)
    metrics.inc("hookgate_events_total", 2, app="a", outcome="202")
    metrics.observe("hookgate_delivery_latency_seconds", 3.0)
    for n in range(3000):  # past the initial file size: the file grows, nothing is lost
        metrics.inc("hookgate_many_total", app=str(n))
    lines = metrics.render().splitlines()
    assert 'hookgate_events_total{app="a",outcome="202"} 7' in lines
    assert 'hookgate_events_total{app="b",outcome="404"} 1' in lines
    assert 'hookgate_delivery_latency_seconds_bucket{le="0.25"} 1' in lines
    assert "hookgate_delivery_latency_seconds_count 2" in lines
    assert "hookgate_delivery_latency_seconds_sum 3.2" in lines
    assert 'hookgate_many_total{app="2999"} 1' in lines
    assert metrics.value("hookgate_events_total", app="a", outcome="202") == 2  # own only
    metrics.close()
