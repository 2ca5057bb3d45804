"""Failure alerts are events: an exhausted delivery and a disabled target become
`hookgate.delivery.failed` / `hookgate.target.disabled` events from the app `hookgate`, which a
rule forwards to a second sink; a failed delivery of an alert emits nothing (no loops). The
real server with its delivery worker process and loopback sinks."""

from __future__ import annotations

from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_an_exhausted_delivery_and_a_disabled_target_are_forwarded_as_alerts(
    tmp_path: Path, sink: harness.Sink
) -> None:
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    with harness.running_sink() as alerts_sink:
        (rules_dir / "rules.toml").write_text(
            f"""
[[rules]]
id = "orders-to-crm"
event_types = ["order"]

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/crm")}"
  retry = [0.2]

[[rules]]
id = "alerts-to-chat"
apps = ["hookgate"]
event_types = ["hookgate.delivery.failed", "hookgate.target.disabled"]

  [[rules.actions]]
  type = "webhook"
  url = "{alerts_sink.url("/chat")}"
  retry = "none"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/broken-pager")}"
  retry = "none"
"""
        )
        sink.statuses["/crm"] = 500
        sink.statuses["/broken-pager"] = 500
        sink.statuses["/target"] = 500
        env = {
            "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
            "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
            "HOOKGATE_RULES_DIR": str(rules_dir),
            "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKGATE_DELIVERY_POLL_SECONDS": "0.2",
            "HOOKGATE_DELIVERY_WORKERS": "1",
        }
        server = harness.ServerProcess(tmp_path, env, "alerts")
        try:
            server.start()
            with server.admin() as admin:
                created = admin.post("/v1/apps", json={"name": "shop"})
                assert created.status_code == 201, created.text
                token = created.json()["token"]
                harness.track_secret(token)
                reserved = admin.post("/v1/apps", json={"name": "hookgate"})
                assert reserved.status_code == 422, reserved.text
                target = admin.post(
                    "/v1/webhook-targets",
                    json={
                        "url": sink.url("/target"),
                        "events": ["refund"],
                        "retry": "none",
                        "disable_after": 1,
                    },
                )
                assert target.status_code == 201, target.text
                harness.track_secret(target.json()["secret"])
                target_id = target.json()["id"]
                with httpx.Client(base_url=server.base_url, trust_env=False) as public:
                    posted = public.post(f"/api/event/{token}", json={"type": "order", "n": 1})
                    assert posted.status_code == 202, posted.text
                    event_id = posted.json()["event_id"]
                    sink.wait_for(2, "/crm", timeout=15.0)  # first attempt and its one retry
                    refund = public.post(f"/api/event/{token}", json={"type": "refund"})
                    assert refund.status_code == 202, refund.text
                    refund_id = refund.json()["event_id"]

                # the order's delivery, the refund's delivery to the target, and the target
                chat = alerts_sink.wait_for(3, "/chat", timeout=15.0)
                by_type = {r.json()["type"]: r.json()["data"] for r in chat}
                failures = {
                    r.json()["data"]["data"]["event_id"]: r.json()["data"]["data"]
                    for r in chat
                    if r.json()["type"] == "hookgate.delivery.failed"
                }
                assert sorted(failures) == sorted([event_id, refund_id])
                assert failures[refund_id]["target_id"] == target_id
                failed = failures[event_id]
                assert failed["rule_id"] == "orders-to-crm"
                assert failed["status"] == "failed"
                assert failed["attempt_count"] == 2
                assert [a["status_code"] for a in failed["attempts"]] == [500, 500]
                disabled = by_type["hookgate.target.disabled"]["data"]
                assert (disabled["id"], disabled["status"]) == (target_id, "disabled")
                assert "secret" not in disabled
                assert all(r.json()["app"] == "hookgate" for r in chat)

                # both alerts also went to the broken pager and failed there for good
                def pager_failed() -> bool:
                    rows = admin.get(
                        "/v1/deliveries", params={"rule_id": "alerts-to-chat", "limit": 100}
                    ).json()["data"]
                    pager = [r for r in rows if r["url"].endswith("/broken-pager")]
                    return len(pager) == 3 and all(r["status"] == "failed" for r in pager)

                harness.wait_until(pager_failed, timeout=15.0)
                # a failure is recorded, and its alert stored, before the worker is told
                events = admin.get(
                    "/v1/events", params={"app_id": "app_hookgate", "limit": 100}
                ).json()["data"]
        finally:
            server.stop()
    assert sorted(e["event_type"] for e in events) == [
        "hookgate.delivery.failed",
        "hookgate.delivery.failed",
        "hookgate.target.disabled",
    ]
    assert len(alerts_sink.requests_to("/chat")) == 3
