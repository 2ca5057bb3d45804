"""At-least-once across a crash: `kill -9` with deliveries pending (receiver failing, or
attempts in flight), restart, receiver up: every pending delivery arrives, with the
`webhook-id` it had before the crash."""

from __future__ import annotations

import base64
from pathlib import Path

import harness
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"e2e-delivery-restart-secret-0002").decode()
EVENTS = 5


def test_pending_deliveries_survive_kill_9(tmp_path: Path, sink: harness.Sink) -> None:
    harness.track_secret(SECRET)
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "relay.toml").write_text(
        f"""
[[rules]]
id = "relay-flaky"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/flaky")}"
  secret_env = "E2E_RESTART_SECRET"
  retry = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]

[[rules]]
id = "relay-hung"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/hung")}"
  secret_env = "E2E_RESTART_SECRET"
  retry = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
"""
    )
    env = {
        "E2E_RESTART_SECRET": SECRET,
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
        "HOOKGATE_RULES_DIR": str(rules_dir),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_LEASE_SECONDS": "2",
        "HOOKGATE_DELIVERY_TIMEOUT_SECONDS": "3",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.2",
        "HOOKGATE_DELIVERY_PER_HOST_CONCURRENCY": "16",
    }
    sink.statuses["/flaky"] = 503
    sink.hang.add("/hung")
    server = harness.ServerProcess(tmp_path, env, name="restart")
    try:
        server.start()
        with server.admin() as admin:
            created = admin.post("/v1/apps", json={"name": "acme"})
            assert created.status_code == 201, created.text
            token = created.json()["token"]
            harness.track_secret(token)
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as public:
            for n in range(EVENTS):
                response = public.post(f"/api/event/{token}", json={"event_type": "x", "n": n})
                assert response.status_code == 202, response.text
        # Every delivery has been tried once: the /hung ones are in flight (leased), the
        # /flaky ones failed and wait for their next attempt.
        before = {
            path: {r.headers["webhook-id"] for r in sink.wait_for(EVENTS, path, timeout=5.0)}
            for path in ("/flaky", "/hung")
        }
        server.kill9()
        assert all(len(ids) == EVENTS for ids in before.values())

        sink.statuses["/flaky"] = 200
        sink.hang.discard("/hung")
        arrived_before = len(sink.received)
        server.start()
        with server.admin() as admin:

            def all_succeeded() -> list[dict[str, object]] | None:
                rows = admin.get("/v1/deliveries", params={"limit": 100}).json()["data"]
                done = len(rows) == 2 * EVENTS and all(r["status"] == "succeeded" for r in rows)
                return rows if done else None

            rows = harness.wait_until(all_succeeded, timeout=15.0)
    finally:
        server.stop()

    after = sink.received[arrived_before:]
    delivered = {r.headers["webhook-id"] for r in after if r.path in ("/flaky", "/hung")}
    assert delivered == before["/flaky"] | before["/hung"]
    assert delivered == {str(r["id"]) for r in rows}
    assert len({r.headers["webhook-id"] for r in sink.received}) == 2 * EVENTS
    for received in after:
        Webhook(SECRET).verify(received.body, received.headers)


def test_graceful_stop_hands_in_flight_deliveries_back(tmp_path: Path, sink: harness.Sink) -> None:
    """SIGTERM while attempts hang: their leases (a minute long here) are released, so the
    restarted gateway sends them at once instead of waiting for the leases to run out."""
    harness.track_secret(SECRET)
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "relay.toml").write_text(
        f"""
[[rules]]
id = "relay"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/hung")}"
  secret_env = "E2E_RESTART_SECRET"
  retry = "standard"
"""
    )
    env = {
        "E2E_RESTART_SECRET": SECRET,
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
        "HOOKGATE_RULES_DIR": str(rules_dir),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_LEASE_SECONDS": "60",
        "HOOKGATE_DELIVERY_TIMEOUT_SECONDS": "30",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.2",
    }
    sink.hang.add("/hung")
    server = harness.ServerProcess(tmp_path, env, name="graceful")
    try:
        server.start()
        with server.admin() as admin:
            created = admin.post("/v1/apps", json={"name": "acme"})
            token = created.json()["token"]
            harness.track_secret(token)
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as public:
            for n in range(3):
                response = public.post(f"/api/event/{token}", json={"event_type": "x", "n": n})
                assert response.status_code == 202, response.text
        hung = {r.headers["webhook-id"] for r in sink.wait_for(3, "/hung", timeout=5.0)}
        server.stop()
        assert server.proc is not None and server.proc.returncode is not None

        sink.hang.discard("/hung")
        server.start()
        # Well inside the 60 s leases: only released rows can be claimed this soon.
        again = sink.wait_for(6, "/hung", timeout=10.0)
    finally:
        server.stop()
    assert {r.headers["webhook-id"] for r in again[3:]} == hung
