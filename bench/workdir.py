"""Build a hookgate working directory for a benchmark: rules, apps and queued deliveries,
written straight through the store so the run starts from a known state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from actions import Delivery, delivery_id
from gateway.ids import new_id
from gateway.models import Event
from gateway.records.apps import create_app
from gateway.store.sqlite.store import SqliteStore

ADMIN = "bench-admin-token"


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        "HOOKGATE_ADMIN_TOKEN": ADMIN,
        "HOOKGATE_STORAGE_DATA_DIR": str(workdir / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": "full",
        "HOOKGATE_RULES_DIR": str(workdir / "rules.d"),
        "HOOKGATE_LIMITS_APP_RATE": "1000000",
        "HOOKGATE_LIMITS_APP_BURST": "1000000",
        "HOOKGATE_LIMITS_GLOBAL_RATE": "1000000",
        "HOOKGATE_LIMITS_GLOBAL_BURST": "1000000",
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_LOG_LEVEL": "info",
    }
    env.update(extra)
    return env


def write_rules(
    workdir: Path,
    *,
    matching_urls: list[str],
    total: int = 100,
    event_types: int = 50,
    apps: list[str] | None = None,
) -> None:
    """`total` rules of which one per URL in `matching_urls` matches the benchmark event
    (type message.inbound from a customer); the rest are spread over other types."""
    lines: list[str] = []
    filler = total - len(matching_urls)
    for i in range(filler):
        app_line = f'apps = ["{apps[i % len(apps)]}"]\n' if apps else ""
        lines.append(
            f'[[rules]]\nid = "filler-{i}"\n{app_line}event_types = ["type.{i % event_types}"]\n'
            f'when = {{ "==" = [{{ var = "channel" }}, "sms"] }}\n'
            f'  [[rules.actions]]\n  type = "webhook"\n  url = "https://crm.example.com/{i}"\n'
        )
    for n, url in enumerate(matching_urls):
        lines.append(
            f'[[rules]]\nid = "forward-inbound-{n}"\nevent_types = ["message.inbound"]\n'
            f'when = {{ "==" = [{{ var = "from.type" }}, "customer"] }}\n'
            f'  [[rules.actions]]\n  type = "forward"\n  url = "{url}"\n  retry = "none"\n'
        )
    (workdir / "rules.d").mkdir(parents=True, exist_ok=True)
    (workdir / "rules.d" / "bench.toml").write_text("\n".join(lines))


def _store(workdir: Path) -> SqliteStore:
    return SqliteStore(workdir / "data" / "hookgate.db", synchronous="normal")


def create_apps(workdir: Path, names: list[str]) -> list[str]:
    """Create apps; returns their tokens in order."""

    async def run() -> list[str]:
        store = _store(workdir)
        await store.open()
        try:
            made = await asyncio.gather(*(create_app(store, name) for name in names))
            return [token for _, token in made]
        finally:
            await store.close()

    return asyncio.run(run())


def queue_deliveries(workdir: Path, url: str, count: int) -> float:
    """Commit one event and `count` pending, due-now deliveries to `url`; returns the
    commit time."""

    async def run() -> float:
        store = _store(workdir)
        await store.open()
        try:
            now = time.time()
            apps = await store.list_apps()
            event = Event(
                new_id("evt_", now),
                apps[0].id,
                "message.inbound",
                now,
                b'{"event_type":"message.inbound","text":"hello"}',
            )
            deliveries = [
                Delivery(
                    id=delivery_id(now),
                    event_id=event.id,
                    action_type="forward",
                    url=url,
                    created_at=now,
                    next_attempt_at=now,
                )
                for _ in range(count)
            ]
            await store.add_event(event, [])
            for start in range(0, count, 2000):
                await store.add_deliveries(deliveries[start : start + 2000])
            return time.time()
        finally:
            await store.close()

    return asyncio.run(run())


def count_rows(workdir: Path, sql: str) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{workdir / 'data' / 'hookgate.db'}?mode=ro", uri=True) as conn:
        conn.execute("PRAGMA busy_timeout=10000")
        return int(conn.execute(sql).fetchone()[0])
