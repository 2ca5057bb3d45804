"""Rule backtest throughput: stored events matched per second by `gateway.rulesets.backtest` on a
SQLite store seeded with `events` events (100 rules, the ingest bench's rule file), median
of `rounds` runs. Runs in process: the figure is the store read plus the match loop."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import orjson

from bench import workdir
from gateway.ids import new_id
from gateway.rulesets.backtest import backtest
from gateway.rulesets.state import load_rule_files
from gateway.store.sqlite.writer import INSERT_EVENT
from rules import Logic, RuleSet


def _seed(work: Path, events: int) -> None:
    """`events` events over the last six days, written straight into the database (the
    writer's group commit is not what this bench measures)."""
    workdir.create_apps(work, ["bench-app"])
    db = work / "data" / "hookgate.db"
    with sqlite3.connect(db) as conn:
        app_id = conn.execute("SELECT id FROM apps").fetchone()[0]
        now = time.time()
        start = now - 6 * 86400
        step = (now - start - 60) / events
        rows = []
        for i in range(events):
            at = start + i * step
            if i % 4 == 0:
                payload = {"event_type": "message.inbound", "from": {"type": "customer"}, "n": i}
                kind = "message.inbound"
            else:
                kind = f"type.{i % 50}"
                payload = {"event_type": kind, "channel": "sms" if i % 3 else "email", "n": i}
            rows.append(
                (new_id("evt_", at), app_id, kind, at, orjson.dumps(payload), "{}", "[]", None)
            )
        conn.executemany(INSERT_EVENT, rows)


def run(tmp: Path, events: int = 100_000, rounds: int = 3) -> dict[str, float]:
    work = tmp / "backtest"
    work.mkdir()
    workdir.write_rules(work, matching_urls=["http://127.0.0.1:9/hook"])
    _seed(work, events)
    logic = Logic()
    result = load_rule_files(work / "rules.d", logic, missing_ok=False)
    assert result.ok, result.errors
    ruleset = RuleSet(result.rules, logic=logic)

    async def once() -> tuple[int, float, int]:
        store = workdir._store(work)
        await store.open()
        try:
            report = await backtest(store, ruleset, since=time.time() - 7 * 86400)
        finally:
            await store.close()
        matched = sum(t.matched for t in report.rules)
        return report.events, report.seconds, matched

    rates = []
    for _ in range(rounds):
        scanned, seconds, matched = asyncio.run(once())
        if scanned != events:
            raise SystemExit(f"backtest scanned {scanned} of {events} events")
        if matched == 0:
            raise SystemExit("backtest matched nothing: the bench rules did not apply")
        rates.append(scanned / seconds)
        print(f"[bench] backtest round: {scanned} events in {seconds:.2f} s", file=sys.stderr)
    return {"backtest_events_per_s": statistics.median(rates)}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as name:
        for key, value in run(Path(name)).items():
            print(f"{key}={value:.4g}")
