"""A receiver that accepts the connection and never answers: it holds only its own host's
slots, other targets still get their deliveries at once, ingest keeps answering, and the
hung attempts end as timeouts within the delivery timeout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import harness
import pytest

pytestmark = pytest.mark.e2e

TIMEOUT = 2.0


def create_target(gateway: harness.Gateway, **fields: Any) -> dict[str, Any]:
    response = gateway.admin.post("/v1/webhook-targets", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    harness.track_secret(body["secret"])
    return body


def test_hung_receiver_delays_neither_other_targets_nor_ingest(
    tmp_path: Path, sink: harness.Sink
) -> None:
    settings = harness.make_settings(
        tmp_path,
        delivery={"timeout_seconds": TIMEOUT, "per_host_concurrency": 2, "concurrency": 4},
    )
    sink.hang.add("/hang")
    with harness.running_sink() as healthy, harness.running_gateway(settings) as gateway:
        hung = create_target(gateway, url=sink.url("/hang"), retry="none", disable_after=None)
        create_target(gateway, url=healthy.url("/ok"), retry="none", disable_after=None)
        _, token = gateway.create_app("acme")

        event_ids = []
        for n in range(4):
            response = gateway.post_event(token, {"event_type": "job_completed", "n": n})
            assert response.status_code == 202
            event_ids.append(response.json()["event_id"])
            # Each event reaches the healthy target within 2 s of its 202, although the
            # hung host holds its two slots from the second event on.
            healthy.wait_for(n + 1, "/ok", timeout=2.0)
        sink.wait_for(2, "/hang", timeout=2.0)

        # Ingest keeps answering while the hung deliveries are outstanding.
        started = time.monotonic()
        for n in range(4, 10):
            response = gateway.post_event(token, {"event_type": "job_completed", "n": n})
            assert response.status_code == 202
            event_ids.append(response.json()["event_id"])
        healthy.wait_for(10, "/ok", timeout=2.0)
        outstanding = gateway.admin.get(
            "/v1/deliveries", params={"target_id": hung["id"], "status": "pending"}
        ).json()["data"]
        if time.monotonic() - started < TIMEOUT:  # no hung attempt can have ended yet
            assert len(outstanding) == 10
            assert len(sink.requests_to("/hang")) == 2  # its per-host cap, no more

        ok_ids = {r.json()["id"] for r in healthy.requests_to("/ok")}
        assert ok_ids == set(event_ids)

        # The first hung attempts end as timeouts, within the delivery timeout (plus slack
        # for recording them).
        first = sink.requests_to("/hang")[:2]
        hung_ids = [r.headers["webhook-id"] for r in first]

        def timed_out() -> list[dict[str, Any]] | None:
            rows = [gateway.admin.get(f"/v1/deliveries/{i}").json() for i in hung_ids]
            return rows if all(r["status"] == "failed" for r in rows) else None

        failed = harness.wait_until(timed_out, timeout=TIMEOUT + 3)
        for delivery in failed:
            [attempt] = delivery["attempts"]
            assert attempt["status_code"] is None
            assert attempt["error"] == f"timed out after {TIMEOUT:g} s"
            assert attempt["latency_ms"] >= TIMEOUT * 1000 * 0.9
        # Their slots went to the next hung deliveries in line.
        sink.wait_for(4, "/hang", timeout=2.0)
