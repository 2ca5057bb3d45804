"""`/metrics` of a gateway with `server.workers = 2`: one scrape, whichever uvicorn worker
answers it, gives the totals of both."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ACCEPTED = re.compile(r'^hookgate_events_total\{app="([^"]+)",outcome="202"\} (\d+)$', re.M)


def _processes_that_counted(tmp: Path) -> int:
    """uvicorn workers whose own metrics file names the events counter."""
    return sum(
        b"hookgate_events_total" in path.read_bytes()
        for path in tmp.glob("hookgate-metrics-*/*.keys")
    )


def test_one_scrape_counts_the_events_every_worker_accepted(
    tmp_path: Path, redis_url: dict[str, Any]
) -> None:
    env = {
        "HOOKGATE_SERVER_WORKERS": "2",
        "HOOKGATE_LIMITS_BACKEND": "redis",
        "HOOKGATE_LIMITS_GLOBAL_RATE": "100000",
        "HOOKGATE_LIMITS_GLOBAL_BURST": "100000",
        "HOOKGATE_LIMITS_UNKNOWN_TOKEN_PER_MINUTE": "100000",
        "HOOKGATE_REDIS_URL": redis_url["url"],
        "HOOKGATE_REDIS_KEY_PREFIX": redis_url["prefix"],
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_DELIVERY_WORKERS": "0",
        # the group's metrics directory is made under TMPDIR: here, where the test sees it
        "TMPDIR": str(tmp_path),
    }
    server = harness.ServerProcess(tmp_path, env, "workers2")
    server.start()
    try:
        with server.admin() as admin:
            created = admin.post(
                "/v1/apps", json={"name": "two-workers", "rate": 100000, "burst": 100000}
            )
            assert created.status_code == 201, created.text
            app_id, token = created.json()["id"], created.json()["token"]
            harness.track_secret(token)
            sent = 0

            def post_one() -> None:
                nonlocal sent
                # a new connection each time, so the kernel hands them to either worker
                with httpx.Client(base_url=server.base_url, trust_env=False) as client:
                    response = client.post(f"/api/event/{token}", json={"n": sent})
                # 404 until this worker's app index has picked up the new app (0.5 s poll)
                assert response.status_code in (202, 404), response.text
                sent += response.status_code == 202

            for _ in range(20):
                post_one()
            # until both workers have accepted some (each names the counter on its first)
            harness.wait_until(
                lambda: _processes_that_counted(tmp_path) == 2 or post_one(), timeout=30
            )
            assert _processes_that_counted(tmp_path) == 2
            for _ in range(3):  # each scrape may reach either worker: every one sees all
                scrape = admin.get("/metrics")
                assert scrape.status_code == 200
                assert ACCEPTED.findall(scrape.text) == [(app_id, str(sent))]
    finally:
        server.stop()
    assert not list(tmp_path.glob("hookgate-metrics-*")), "serve left its metrics directory"
