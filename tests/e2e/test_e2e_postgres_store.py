"""`hookgate serve` on the PostgreSQL store: events accepted, listed and delivered (signed,
each once), and still there after `kill -9` of the gateway and a restart.

The multi-gateway tests (several gateways on one database) run the Redis store's e2e
suite on this backend too.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET = "whsec_" + base64.b64encode(b"e2e-postgres-store-relay-secret").decode()
EVENTS = 12


def gateway(tmp: Path, postgres_url: dict[str, Any], sink: harness.Sink) -> harness.ServerProcess:
    rules_dir = tmp / "rules.d"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "relay.toml").write_text(
        f"""
[[rules]]
id = "relay"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/relay")}"
  secret_env = "E2E_POSTGRES_STORE_SECRET"
"""
    )
    env = {
        "HOOKGATE_STORAGE_BACKEND": "postgres",
        "HOOKGATE_POSTGRES_URL": f"{postgres_url['url']}?search_path={postgres_url['schema']}",
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp / "data"),
        "HOOKGATE_LIMITS_GLOBAL_RATE": "1000000",
        "HOOKGATE_LIMITS_GLOBAL_BURST": "1000000",
        "HOOKGATE_RULES_DIR": str(rules_dir),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.1",
        "E2E_POSTGRES_STORE_SECRET": SECRET,
    }
    return harness.ServerProcess(tmp, env, "postgres-gw")


def test_events_are_stored_listed_delivered_and_survive_kill_9(
    tmp_path: Path, postgres_url: dict[str, Any], sink: harness.Sink
) -> None:
    harness.track_secret(SECRET)
    gw = gateway(tmp_path, postgres_url, sink)
    url = gw.start()
    try:
        with gw.admin() as admin:
            created = admin.post("/v1/apps", json={"name": "pg", "rate": 1e6, "burst": 1000000})
        assert created.status_code == 201, created.text
        app_id, token = created.json()["id"], created.json()["token"]
        harness.track_secret(token)

        accepted: dict[str, int] = {}
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            for n in range(EVENTS):
                response = client.post(f"/api/event/{token}", json={"event_type": "tick", "n": n})
                assert response.status_code == 202, response.text
                accepted[response.json()["event_id"]] = n
            again = client.post(
                f"/api/event/{token}", json={"n": 0}, headers={"idempotency-key": "k1"}
            )
            repeat = client.post(
                f"/api/event/{token}", json={"n": 1}, headers={"idempotency-key": "k1"}
            )
        assert again.json()["event_id"] == repeat.json()["event_id"]
        accepted[again.json()["event_id"]] = -1

        def delivered() -> list[harness.Received] | None:
            got = sink.requests_to("/relay")
            return got if len(got) >= len(accepted) else None

        received = harness.wait_until(delivered, timeout=20.0, interval=0.1)
        ids = [r.headers["webhook-id"] for r in received]
        assert len(ids) == len(set(ids)) == len(accepted)  # each delivery sent once
        for request in received:
            Webhook(SECRET).verify(request.body, request.headers)
        sent = {orjson.loads(r.body)["data"].get("n") for r in received}
        assert sent == set(range(EVENTS))

        # The sink counts a request when it arrives; its attempt is committed a moment
        # later. Kill only once every outcome is stored: what is tested is that stored
        # records survive, not the (allowed) re-send of an attempt cut off by the kill.
        with gw.admin() as admin:

            def all_succeeded() -> bool:
                rows = admin.get("/v1/deliveries", params={"limit": 100}).json()["data"]
                return len(rows) == len(accepted) and all(r["status"] == "succeeded" for r in rows)

            harness.wait_until(all_succeeded, timeout=20.0, interval=0.1)
        gw.kill9()
        gw.start()
        with gw.admin() as admin:
            page = admin.get("/v1/events", params={"app_id": app_id, "limit": 100})
            assert page.status_code == 200, page.text
            assert {e["id"] for e in page.json()["data"]} == set(accepted)
            rows = admin.get("/v1/deliveries", params={"limit": 100}).json()["data"]
        assert len(rows) == len(accepted) and {r["status"] for r in rows} == {"succeeded"}
    finally:
        gw.stop()
