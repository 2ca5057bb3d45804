"""Console page render times against a seeded SQLite store (`python -m bench --only console`).

Seeds the real store's schema (opened once through `SqliteStore`) with `events` events
(default 1 000 000) over the last 30 days, one delivery per 10 events (a tenth failed),
three apps and a target, straight through sqlite3 in one transaction, then serves the real
app in-process (Starlette's TestClient, lifespan included) and times each console page:
the median of `rounds` GETs, measured around the request, so it includes the in-process
transport (a few tens of µs) on top of the server's render.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from gateway.app import create_app
from gateway.config import load_settings
from gateway.ids import new_id
from gateway.store import build_store
from gateway.store.base import Store

TOKEN = "bench-admin-token"


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def seed(db: Path, events: int) -> tuple[str, str, str]:
    """Fill the store; returns (an event id, a failed delivery id, an app id)."""
    now = time.time()
    start = now - 30 * 86400
    step = (now - start) / events
    apps = [new_id("app_", now) for _ in range(3)]
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA journal_mode = WAL")
    with con:
        for i, app_id in enumerate(apps):
            con.execute(
                "INSERT INTO apps (id, name, token_hash, enabled, created_at, updated_at) "
                "VALUES (?, ?, ?, 1, ?, ?)",
                (app_id, f"app-{i}", f"{i:064x}", now, now),
            )
        batch_e: list[tuple[object, ...]] = []
        batch_d: list[tuple[object, ...]] = []
        event_id = delivery_failed = ""
        for n in range(events):
            at = start + n * step
            eid = new_id("evt_", at)
            payload = b'{"event_type":"order.created","total":%d}' % (n % 5000)
            batch_e.append(
                (
                    eid,
                    apps[n % 3],
                    "order.created" if n % 2 else "order.paid",
                    at,
                    payload,
                    '{"content-type":"application/json"}',
                    '["notify"]',
                )
            )
            if n % 10 == 0:
                status = "failed" if n % 100 == 0 else "succeeded"
                did = new_id("dlv_", at)
                batch_d.append(
                    (did, eid, "notify", "webhook", "http://127.0.0.1:9/hook", status, "[]", at, 1)
                )
                if status == "failed":
                    delivery_failed = did
            event_id = eid
            if len(batch_e) >= 50_000:
                _flush(con, batch_e, batch_d)
        _flush(con, batch_e, batch_d)
    con.close()
    return event_id, delivery_failed, apps[0]


def _flush(
    con: sqlite3.Connection, events: list[tuple[object, ...]], deliveries: list[tuple[object, ...]]
) -> None:
    con.executemany(
        "INSERT INTO events (id, app_id, event_type, received_at, payload, headers, "
        "matched_rules) VALUES (?, ?, ?, ?, ?, ?, ?)",
        events,
    )
    con.executemany(
        "INSERT INTO deliveries (id, event_id, rule_id, action_type, url, status, retry, "
        "created_at, attempt_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        deliveries,
    )
    events.clear()
    deliveries.clear()


def run(tmp: Path, events: int = 1_000_000, rounds: int = 21) -> dict[str, float]:
    work = tmp / "console"
    (work / "rules.d").mkdir(parents=True)
    settings = load_settings(
        None,
        env={},
        server={"admin_token": TOKEN},
        storage={"data_dir": str(work / "data"), "synchronous": "normal"},
        rules={"dir": str(work / "rules.d"), "reload": False},
        delivery={"workers": 0},
        log={"requests": False},
    )
    store: Store = build_store(settings)

    async def schema() -> None:
        await store.open()
        await store.close()

    asyncio.run(schema())
    db = next((work / "data").glob("*.db"))
    started = time.perf_counter()
    event_id, failed_id, app_id = seed(db, events)
    _log(f"console: seeded {events} events in {time.perf_counter() - started:.1f} s")
    pages = {
        "overview": "/console/",
        "events": "/console/events",
        "events_filtered": f"/console/events?app_id={app_id}&event_type=order.paid",
        "events_page_2": None,
        "event": f"/console/events/{event_id}",
        "deliveries": "/console/deliveries",
        "deliveries_failed": "/console/deliveries?status=failed",
        "delivery": f"/console/deliveries/{failed_id}",
        "recover_count_1d": f"/console/deliveries/recover?since={time.time() - 86400:.0f}",
        "apps": "/console/apps",
        "app": f"/console/apps/{app_id}",
        "targets": "/console/targets",
        "rules": "/console/rules",
    }
    figures: dict[str, float] = {"console_events_seeded": float(events)}
    # Imported here: TestClient warns about httpx at import, which every `python -m bench`
    # would print even when the console benchmark is not run.
    from starlette.testclient import TestClient

    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        signed = client.post("/console/sign-in", data={"token": TOKEN}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
        first = client.get("/console/events")
        cursor = first.text.split("cursor=")[1].split('"')[0].split("&")[0]
        pages["events_page_2"] = f"/console/events?cursor={cursor}"
        for name, path in pages.items():
            assert path is not None
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                response = client.get(path, follow_redirects=False)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (name, response.status_code)
            figures[f"console_{name}_median_ms"] = statistics.median(times)
            _log(f"console {name}: median {statistics.median(times):.2f} ms")
    return figures
