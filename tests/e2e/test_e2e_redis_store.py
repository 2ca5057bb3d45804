"""Two `hookgate serve` processes (each with its delivery worker process) on one Redis
store: what one accepts the other sees, every event's delivery is sent by exactly one
worker, and `kill -9` of one gateway loses nothing it answered 202.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SECRET = "whsec_" + base64.b64encode(b"e2e-redis-store-relay-secret-01").decode()
EVENTS = 24
SENDERS = 4
KILL_AFTER = 60  # events the doomed gateway answers 202 before it is killed


class Pair:
    """Two gateways sharing one Redis store (and Redis rate limits) under a test prefix."""

    def __init__(self, tmp: Path, redis_url: dict[str, Any], sink: harness.Sink) -> None:
        rules_dir = tmp / "rules.d"
        rules_dir.mkdir()
        (rules_dir / "relay.toml").write_text(
            f"""
[[rules]]
id = "relay"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/relay")}"
  secret_env = "E2E_REDIS_STORE_SECRET"
"""
        )
        env = {
            "HOOKGATE_STORAGE_BACKEND": "redis",
            "HOOKGATE_REDIS_URL": redis_url["url"],
            "HOOKGATE_REDIS_KEY_PREFIX": redis_url["prefix"],
            "HOOKGATE_LIMITS_BACKEND": "redis",
            "HOOKGATE_LIMITS_GLOBAL_RATE": "1000000",
            "HOOKGATE_LIMITS_GLOBAL_BURST": "1000000",
            "HOOKGATE_RULES_DIR": str(rules_dir),
            "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKGATE_DELIVERY_POLL_SECONDS": "0.1",
            "HOOKGATE_DELIVERY_LEASE_SECONDS": "5",
            "E2E_REDIS_STORE_SECRET": SECRET,
        }
        self.gateways = [
            harness.ServerProcess(tmp, {**env, "HOOKGATE_STORAGE_DATA_DIR": str(tmp / name)}, name)
            for name in ("redis-gw1", "redis-gw2")
        ]

    def start(self) -> list[str]:
        return [gw.start() for gw in self.gateways]

    def stop(self) -> None:
        for gw in self.gateways:
            gw.stop()


@pytest.fixture
def pair(tmp_path: Path, redis_url: dict[str, Any], sink: harness.Sink) -> Iterator[Pair]:
    harness.track_secret(SECRET)
    running = Pair(tmp_path, redis_url, sink)
    try:
        yield running
    finally:
        running.stop()


def create_app(gw: harness.ServerProcess, name: str) -> tuple[str, str]:
    with gw.admin() as admin:
        created = admin.post("/v1/apps", json={"name": name, "rate": 1e6, "burst": 1000000})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    harness.track_secret(token)
    return created.json()["id"], token


def listed_events(gw: harness.ServerProcess, app_id: str) -> dict[str, Any]:
    """Every stored event of `app_id` as `gw` lists it, walking the cursor; by id."""
    found: dict[str, Any] = {}
    cursor: str | None = None
    with gw.admin() as admin:
        while True:
            params: dict[str, Any] = {"app_id": app_id, "limit": 37}
            if cursor:
                params["cursor"] = cursor
            page = admin.get("/v1/events", params=params)
            assert page.status_code == 200, page.text
            for event in page.json()["data"]:
                assert event["id"] not in found, "an event was listed twice across pages"
                found[event["id"]] = event
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return found


def deliveries(gw: harness.ServerProcess) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    with gw.admin() as admin:
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = admin.get("/v1/deliveries", params=params)
            assert page.status_code == 200, page.text
            rows += page.json()["data"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return rows


def wait_all_delivered(gw: harness.ServerProcess, count: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        rows = deliveries(gw)
        ok = len(rows) == count and all(r["status"] == "succeeded" for r in rows)
        return rows if ok else None

    rows: list[dict[str, Any]] = harness.wait_until(done, timeout=20.0, interval=0.1)
    return rows


def test_two_gateways_share_apps_events_and_deliver_each_event_once(
    pair: Pair, sink: harness.Sink
) -> None:
    url1, url2 = pair.start()
    gw1, gw2 = pair.gateways
    app_id, token = create_app(gw1, "shared")

    accepted: dict[str, int] = {}  # event id -> n
    with httpx.Client(trust_env=False, timeout=10) as client:

        def post(url: str, n: int) -> httpx.Response:
            return client.post(f"{url}/api/event/{token}", json={"event_type": "tick", "n": n})

        # created through gw1, taken by gw2 within a second (its app index polls the store)
        first = harness.wait_until(
            lambda: (r := post(url2, 0)).status_code == 202 and r, timeout=1.0, interval=0.05
        )
        accepted[first.json()["event_id"]] = 0
        for n in range(1, EVENTS):
            response = post(url1 if n % 2 else url2, n)
            assert response.status_code == 202, response.text
            accepted[response.json()["event_id"]] = n

    # either gateway lists every event, whichever took it
    for gw in (gw1, gw2):
        listed = listed_events(gw, app_id)
        assert set(listed) == set(accepted)
        for event_id, n in accepted.items():
            assert listed[event_id]["payload"] == {"event_type": "tick", "n": n}
            assert listed[event_id]["matched_rules"] == ["relay"]

    # both workers claim from one queue: every delivery sent once, by one of them
    rows = wait_all_delivered(gw2, EVENTS)
    assert {r["event_id"] for r in rows} == set(accepted)
    received = sink.requests_to("/relay")
    webhook_ids = [r.headers["webhook-id"] for r in received]
    assert sorted(webhook_ids) == sorted(r["id"] for r in rows)  # each exactly once
    for request in received:
        Webhook(SECRET).verify(request.body, request.headers)
    assert {orjson.loads(r.body)["data"]["n"] for r in received} == set(range(EVENTS))


def test_kill_9_of_one_gateway_loses_no_acknowledged_event(pair: Pair, sink: harness.Sink) -> None:
    _, url2 = pair.start()
    gw1, gw2 = pair.gateways
    app_id, token = create_app(gw1, "doomed")
    harness.wait_until(lambda: token_known(url2, token), timeout=1.0, interval=0.05)

    acked: dict[str, tuple[int, int]] = {}  # event id -> (sender, seq)
    lock = threading.Lock()
    enough = threading.Event()
    failures: list[str] = []
    cut_off: list[int] = []

    def send(sender: int) -> None:
        with httpx.Client(base_url=url2, trust_env=False, timeout=10) as client:
            seq = 0
            while True:
                seq += 1
                try:
                    response = client.post(
                        f"/api/event/{token}",
                        json={"event_type": "tick", "sender": sender, "seq": seq},
                    )
                except httpx.TransportError:
                    with lock:
                        cut_off.append(sender)
                    return  # the gateway is gone
                if response.status_code != 202:
                    failures.append(f"{response.status_code} {response.text}")
                    return
                with lock:
                    acked[response.json()["event_id"]] = (sender, seq)
                    if len(acked) >= KILL_AFTER:
                        enough.set()

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(SENDERS)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=30), failures[:3]
    gw2.kill9()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures[:3]
    assert sorted(cut_off) == list(range(SENDERS)), "every sender was cut off mid-stream"

    # the survivor has every event the dead gateway acknowledged ...
    stored = listed_events(gw1, app_id)
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    for event_id, (sender, seq) in acked.items():
        assert stored[event_id]["payload"] == {"event_type": "tick", "sender": sender, "seq": seq}
    # ... and its worker sends every delivery, each with its own webhook-id
    rows = wait_all_delivered(gw1, len(stored))
    assert {r["event_id"] for r in rows} == set(stored)
    sent = {r.headers["webhook-id"] for r in sink.requests_to("/relay")}
    assert sent == {r["id"] for r in rows}


def token_known(url: str, token: str) -> bool:
    """Whether the gateway at `url` knows the token (a body it refuses with 400, not 404)."""
    response = httpx.post(f"{url}/api/event/{token}", content=b"[", trust_env=False, timeout=5)
    return response.status_code != 404
