"""`make bench` / `python -m bench`: run every benchmark, print a table and `name=value`
lines, and regenerate docs/performance.md.

Ingest figures are ratios against `bench/baseline.py` measured in the same invocation,
alternating A B A B and quoting medians, because this machine is noisy. Never used by the
test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import backtest, console, match, procs, transport_micro, workdir, wrk
from bench import postgres as pg_bench

REPO = procs.REPO
REDIS_URL = os.environ.get("HOOKGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version()}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bench_ingest(tmp: Path, seconds: int, rounds: int, redis: bool) -> dict[str, float]:
    """Baseline vs hookgate (SQLite, durable commit, 100 rules, one delivery per event)."""
    results: dict[str, list[wrk.WrkResult]] = {"baseline": [], "hookgate": [], "hookgate_redis": []}
    with procs.uvicorn_app("bench.sink:app", tmp, "sink") as sink:
        work = tmp / "ingest"
        work.mkdir()
        workdir.write_rules(work, matching_urls=[sink.url + "/hook"])
        token = workdir.create_apps(work, ["bench-app"])[0]
        variants = ["baseline", "hookgate"] + (["hookgate_redis"] if redis else [])
        for round_no in range(rounds):
            for variant in variants:
                if variant == "baseline":
                    with procs.uvicorn_app("bench.baseline:app", tmp, "baseline") as base:
                        result = wrk.run(base.url + "/api/event/x", tmp, seconds=seconds)
                else:
                    extra = {}
                    if variant == "hookgate_redis":
                        extra = {
                            "HOOKGATE_LIMITS_BACKEND": "redis",
                            "HOOKGATE_REDIS_URL": REDIS_URL,
                            "HOOKGATE_REDIS_KEY_PREFIX": f"hgbench:{os.getpid()}:",
                        }
                    before = workdir.count_rows(work, "SELECT count(*) FROM events")
                    with procs.hookgate(work, workdir.base_env(work, **extra), variant) as hg:
                        result = wrk.run(f"{hg.url}/api/event/{token}", tmp, seconds=seconds)
                    stored = workdir.count_rows(work, "SELECT count(*) FROM events") - before
                    # Requests in flight when wrk stops are committed but never counted by it,
                    # so the store may hold a few more; it must never hold fewer.
                    if stored < result.accepted:
                        raise SystemExit(
                            f"{variant}: {result.accepted} events answered 202 but {stored} stored"
                        )
                results[variant].append(result)
                log(
                    f"ingest round {round_no + 1} {variant}: {result.rps:.0f} req/s, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"202s {result.accepted}, other {result.other}"
                )
    out: dict[str, float] = {}
    for variant, runs in results.items():
        if not runs:
            continue
        out[f"ingest_{variant}_rps"] = statistics.median(r.rps for r in runs)
        out[f"ingest_{variant}_p50_ms"] = statistics.median(r.p50_ms for r in runs)
        out[f"ingest_{variant}_p99_ms"] = statistics.median(r.p99_ms for r in runs)
        out[f"ingest_{variant}_non202"] = float(sum(r.other for r in runs))
    out["ingest_ratio"] = out["ingest_hookgate_rps"] / out["ingest_baseline_rps"]
    if redis:
        out["ingest_redis_ratio"] = out["ingest_hookgate_redis_rps"] / out["ingest_baseline_rps"]
    return out


def bench_delivery(
    tmp: Path, count: int, seconds: int, rounds: int, drain_only: bool = False
) -> dict[str, float]:
    """Drain `count` queued deliveries to a fast sink; then (unless `drain_only`) ingest
    with vs without a hung second target."""
    out: dict[str, float] = {}
    with procs.uvicorn_app("bench.sink:app", tmp, "dsink") as sink:
        work = tmp / "delivery"
        work.mkdir()
        workdir.write_rules(work, matching_urls=[sink.url + "/hook"])
        workdir.create_apps(work, ["bench-app"])
        # The SSRF guard on, the sink's loopback allowed by `allowed_networks`: the guard's
        # cost (the resolver and the literal check) is part of the figure.
        guarded = workdir.base_env(
            work,
            HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS="false",
            HOOKGATE_DELIVERY_ALLOWED_NETWORKS="127.0.0.0/8",
        )
        with procs.hookgate(work, guarded, "hookgate-drain"):
            start_count = int(httpx.get(sink.url + "/count", trust_env=False).text)
            queued_at = workdir.queue_deliveries(work, sink.url + "/hook", count)
            deadline = time.monotonic() + 600
            while int(httpx.get(sink.url + "/count", trust_env=False).text) - start_count < count:
                if time.monotonic() > deadline:
                    raise SystemExit("delivery drain did not finish within 10 minutes")
                time.sleep(0.05)
            drained_at = time.time()
        out["delivery_drain_per_s"] = count / (drained_at - queued_at)
        log(f"delivery: {count} drained at {out['delivery_drain_per_s']:.0f}/s (SSRF guard on)")
        if drain_only:
            return out

        hang = procs.HangServer()
        hung_url = f"http://127.0.0.1:{hang.port}/hook"
        # "one": only the healthy target; "two": a second, healthy target; "hung": the
        # second target accepts and never answers. The hang's own cost is hung vs two (same
        # rows written, same deliveries queued); hung vs one also counts the second delivery.
        variants = {
            "one": [sink.url + "/hook"],
            "two": [sink.url + "/hook", sink.url + "/hook2"],
            "hung": [sink.url + "/hook", hung_url],
        }
        try:
            paths = {name: tmp / f"targets-{name}" for name in variants}
            for name, urls in variants.items():
                paths[name].mkdir()
                workdir.write_rules(paths[name], matching_urls=urls)
            tokens = {name: workdir.create_apps(p, ["bench-app"])[0] for name, p in paths.items()}
            runs: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name, path in paths.items():
                    env = workdir.base_env(path, HOOKGATE_DELIVERY_TIMEOUT_SECONDS="15")
                    with procs.hookgate(path, env, f"hookgate-{name}") as hg:
                        result = wrk.run(f"{hg.url}/api/event/{tokens[name]}", tmp, seconds=seconds)
                    runs[name].append(result.rps)
                    log(f"ingest with targets={name}: {result.rps:.0f} req/s")
        finally:
            hang.close()
    for name in variants:
        out[f"delivery_ingest_{name}_rps"] = statistics.median(runs[name])
    hung_rps = out["delivery_ingest_hung_rps"]
    out["delivery_hung_cost_pct"] = 100 * (1 - hung_rps / out["delivery_ingest_two_rps"])
    out["delivery_second_target_cost_pct"] = 100 * (1 - hung_rps / out["delivery_ingest_one_rps"])
    return out


def bench_memory(tmp: Path, seconds: int) -> dict[str, float]:
    """RSS with 10 000 apps and 10 000 rules loaded, idle and after an ingest run."""
    work = tmp / "memory"
    work.mkdir()
    names = [f"app-{i}" for i in range(10_000)]
    tokens = workdir.create_apps(work, names)
    with procs.uvicorn_app("bench.sink:app", tmp, "msink") as sink:
        workdir.write_rules(
            work, matching_urls=[sink.url + "/hook"], total=10_000, event_types=500, apps=names[:50]
        )
        with procs.hookgate(work, workdir.base_env(work), "hookgate-memory") as hg:
            time.sleep(2)
            idle = hg.rss_mb()
            workers = [procs.rss_mb(pid) for pid in procs.children(hg.popen.pid)]
            wrk.run(f"{hg.url}/api/event/{tokens[0]}", tmp, seconds=seconds)
            time.sleep(1)
            after = hg.rss_mb()
    out = {"memory_idle_mb": idle, "memory_after_ingest_mb": after}
    if workers:
        out["memory_worker_idle_mb"] = max(workers)
    return out


TARGETS = [
    ("ingest_ratio", ">=", 0.6, "ingest ratio hookgate/baseline (durable commit)"),
    ("ingest_hookgate_p99_ms", "<=", 25.0, "ingest p99 at 50 connections (ms)"),
    ("match_median_us", "<=", 20.0, "match median, 10 000 rules (us)"),
    ("match_p99_us", "<=", 100.0, "match p99, 10 000 rules (us)"),
    ("delivery_drain_per_s", ">=", 1500.0, "deliveries/s to a loopback sink"),
    ("client_cpu_ratio", "<=", 0.2, "CPU per delivery, aiohttp / httpx default"),
    ("delivery_hung_cost_pct", "<=", 10.0, "ingest cost of a hung target (%)"),
    ("memory_idle_mb", "<=", 150.0, "RSS, 10 000 apps + 10 000 rules, idle (MB)"),
    ("memory_after_ingest_mb", "<=", 150.0, "RSS after the ingest run (MB)"),
    ("ingest_redis_ratio", ">=", 0.5, "ingest ratio with limits.backend = redis"),
    ("ingest_postgres_ratio", ">=", 0.4, "ingest ratio, storage.backend = postgres"),
    ("backtest_events_per_s", ">=", 50_000.0, "rule backtest, stored events/s (SQLite)"),
]


def verdict(figures: dict[str, float]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, op, bound, label in TARGETS:
        if name not in figures:
            continue
        value = figures[name]
        ok = value >= bound if op == ">=" else value <= bound
        rows.append((label, f"{value:.3g}", f"{op} {bound:g}", "met" if ok else "MISSED"))
    return rows


def write_docs(figures: dict[str, float], info: dict[str, str], command: str) -> None:
    path = REPO / "docs" / "performance.md"
    text = path.read_text() if path.exists() else ""
    marker_start, marker_end = "<!-- bench:start -->", "<!-- bench:end -->"
    lines = [
        marker_start,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"with `{command}` on {info['nproc']} cores ({info['cpu']}), Python {info['python']}.",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {value} | {target} | {ok} |" for label, value, target, ok in verdict(figures)
    ]
    lines += ["", "All figures:", "", "```"]
    lines += [f"{k}={v:.4g}" for k, v in sorted(figures.items())]
    lines += ["```", "", marker_end]
    block = "\n".join(lines)
    if marker_start in text and marker_end in text:
        head, rest = text.split(marker_start, 1)
        tail = rest.split(marker_end, 1)[1]
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "# Performance\n\n") + block + "\n"
    path.write_text(text)


ALL_PARTS = (
    "ingest",
    "match",
    "delivery",
    "drain",
    "client",
    "memory",
    "postgres",
    "retention",
    "backtest",
    "console",
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="*",
        choices=ALL_PARTS,
        help="drain: only the delivery drain; client: only the CPU per request of each client",
    )
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration per ingest run")
    parser.add_argument("--rounds", type=int, default=3, help="A B alternations per comparison")
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--backtest-events", type=int, default=100_000)
    parser.add_argument("--console-events", type=int, default=1_000_000)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis-limits variant")
    parser.add_argument(
        "--retention-events", type=int, default=10_000_000, help="events seeded for retention"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    args = parser.parse_args()
    everything = set(ALL_PARTS) - {"drain"}  # the delivery part measures the drain too
    only = set(args.only or everything)
    if only & {"ingest", "delivery", "memory"} and not wrk.have_wrk():
        print(wrk.INSTALL_HINT, file=sys.stderr)
        return 2
    info = machine()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "match" in only:
            figures.update(match.run())
            median, p99 = figures["match_median_us"], figures["match_p99_us"]
            log(f"match: median {median:.2f} us, p99 {p99:.2f} us")
        if "ingest" in only:
            figures.update(bench_ingest(tmp, args.seconds, args.rounds, not args.no_redis))
        if "client" in only:
            figures.update(transport_micro.run(rounds=args.rounds))
            log(
                f"client CPU per request: aiohttp {figures['client_aiohttp_cpu_us']:.0f} us, "
                f"httpx default {figures['client_httpx_cpu_us']:.0f} us "
                f"(ratio {figures['client_cpu_ratio']:.2f})"
            )
        if "drain" in only and "delivery" not in only:
            figures.update(bench_delivery(tmp, args.deliveries, 0, 0, drain_only=True))
        no_postgres = pg_bench.available() if only & {"postgres", "retention"} else None
        if no_postgres:
            log(f"skipping the PostgreSQL benches: {no_postgres}")
        if "postgres" in only and not no_postgres:
            figures.update(pg_bench.bench_ingest(tmp, args.seconds, args.rounds))
        if "retention" in only and not no_postgres:
            figures.update(pg_bench.bench_retention(args.retention_events))
        if "delivery" in only:
            figures.update(
                bench_delivery(tmp, args.deliveries, max(5, args.seconds * 2 // 3), args.rounds)
            )
        if "console" in only:
            figures.update(console.run(tmp, args.console_events))
        if "memory" in only:
            figures.update(bench_memory(tmp, max(5, args.seconds * 2 // 3)))
        if "backtest" in only:
            figures.update(backtest.run(tmp, args.backtest_events, args.rounds))
            log(f"backtest: {figures['backtest_events_per_s']:.0f} events/s (median)")
    print(f"\nmachine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}")
    print(f"{'figure':48} {'value':>10}  {'target':>10}")
    for label, value, target, ok in verdict(figures):
        print(f"{label:48} {value:>10}  {target:>10}  {ok}")
    print()
    for key, value in sorted(figures.items()):
        print(f"{key}={value:.4g}")
    command = "make bench" if not sys.argv[1:] else "python -m bench " + " ".join(sys.argv[1:])
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "last.json").write_text(json.dumps({"machine": info, "figures": figures}, indent=2))
    if not args.no_docs and only == everything:
        write_docs(figures, info, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
