"""Failing receivers end to end: retry policies, Retry-After, 410, disabling targets, and
manual retry and recovery (which re-send with the same `webhook-id`)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
import pytest

from gateway.config import Settings

pytestmark = pytest.mark.e2e

# Long enough for a retry or a stray delivery to show up if the gateway were going to send one.
QUIET_SECONDS = 0.6


def write_rules(settings: Settings, text: str) -> None:
    directory = Path(settings.rules.dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.toml").write_text(text)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def create_target(gateway: harness.Gateway, **fields: Any) -> dict[str, Any]:
    response = gateway.admin.post("/v1/webhook-targets", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    harness.track_secret(body["secret"])
    return body


def delivery_when(
    gateway: harness.Gateway, delivery_id: str, status: str, timeout: float = 10.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = gateway.admin.get(f"/v1/deliveries/{delivery_id}").json()
        return body if body["status"] == status else None

    result: dict[str, Any] = harness.wait_until(check, timeout)
    return result


def attempted(gateway: harness.Gateway, delivery_id: str) -> dict[str, Any]:
    """The delivery once its first attempt is recorded."""

    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = gateway.admin.get(f"/v1/deliveries/{delivery_id}").json()
        return body if body["attempt_count"] >= 1 else None

    result: dict[str, Any] = harness.wait_until(check)
    return result


def only_delivery(gateway: harness.Gateway, event_id: str) -> dict[str, Any]:
    [summary] = gateway.admin.get(f"/v1/events/{event_id}").json()["deliveries"]
    return summary  # type: ignore[no-any-return]


def post(gateway: harness.Gateway, token: str, payload: dict[str, Any]) -> str:
    response = gateway.post_event(token, payload)
    assert response.status_code == 202, response.text
    event_id: str = response.json()["event_id"]
    return event_id


def rule_gateway(settings: Settings, sink: harness.Sink, path: str, retry: str) -> Settings:
    write_rules(
        settings,
        f"""
[[rules]]
id = "notify"
event_types = ["job_completed"]

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url(path)}"
  retry = {retry}
""",
    )
    return settings


def test_retry_none_makes_exactly_one_attempt(settings: Settings, sink: harness.Sink) -> None:
    sink.statuses["/fail"] = 500
    rule_gateway(settings, sink, "/fail", '"none"')
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        event_id = post(gateway, token, {"event_type": "job_completed"})
        delivery = delivery_when(gateway, only_delivery(gateway, event_id)["id"], "failed")
        time.sleep(QUIET_SECONDS)
        assert len(sink.requests_to("/fail")) == 1
        again = gateway.admin.get(f"/v1/deliveries/{delivery['id']}").json()
    assert again == delivery
    assert delivery["attempt_count"] == 1
    assert delivery["next_attempt_at"] is None
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 500
    assert attempt["error"] == "HTTP 500"
    assert attempt["response_excerpt"] == '{"ok":true}'


def test_delay_list_retries_after_each_delay_then_fails(
    settings: Settings, sink: harness.Sink
) -> None:
    sink.statuses["/fail"] = 500
    rule_gateway(settings, sink, "/fail", "[1, 1]")
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        event_id = post(gateway, token, {"event_type": "job_completed"})
        delivery_id = only_delivery(gateway, event_id)["id"]
        first = attempted(gateway, delivery_id)
        if first["status"] == "pending" and first["attempt_count"] == 1:  # scheduled ~1 s out
            assert epoch(first["next_attempt_at"]) >= epoch(first["attempts"][0]["at"]) + 0.9
        delivery = delivery_when(gateway, delivery_id, "failed", timeout=15.0)
        listed = gateway.admin.get("/v1/deliveries", params={"status": "failed"}).json()
        time.sleep(QUIET_SECONDS)
        received = sink.requests_to("/fail")
    assert delivery["attempt_count"] == 3
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500]
    assert [d["id"] for d in listed["data"]] == [delivery_id]
    assert len(received) == 3
    assert len({r.headers.get("webhook-id") for r in received}) == 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(received)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    at = [epoch(a["at"]) for a in delivery["attempts"]]
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(at)), at


def test_retry_succeeds_once_the_receiver_recovers(settings: Settings, sink: harness.Sink) -> None:
    sink.statuses["/flaky"] = 503
    rule_gateway(settings, sink, "/flaky", "[0.3, 0.3, 0.3, 0.3, 0.3]")
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        event_id = post(gateway, token, {"event_type": "job_completed"})
        delivery_id = only_delivery(gateway, event_id)["id"]
        sink.wait_for(2, "/flaky", timeout=5.0)
        sink.statuses["/flaky"] = 200
        delivery = delivery_when(gateway, delivery_id, "succeeded")
    codes = [a["status_code"] for a in delivery["attempts"]]
    assert codes[-1] == 200
    assert set(codes[:-1]) == {503}
    assert len(sink.requests_to("/flaky")) == len(codes)


def wait_target_status(gateway: harness.Gateway, target_id: str, status: str) -> None:
    """Until the API shows `status` and the live matcher has caught up with it."""

    def check() -> bool:
        shown = gateway.admin.get(f"/v1/webhook-targets/{target_id}").json()["status"]
        live = gateway.gw.rules.targets.get(target_id)
        return shown == status and live is not None and live.status == status

    harness.wait_until(check)


def test_target_disabled_after_consecutive_failures_until_patched_active(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    sink.statuses["/t"] = 500
    target = create_target(gateway, url=sink.url("/t"), retry="none", disable_after=3)
    _, token = gateway.create_app("acme")
    failed = [post(gateway, token, {"event_type": "job_completed", "n": n}) for n in range(3)]
    for event_id in failed:
        delivery_when(gateway, only_delivery(gateway, event_id)["id"], "failed")
    wait_target_status(gateway, target["id"], "disabled")
    shown = gateway.admin.get(f"/v1/webhook-targets/{target['id']}").json()
    assert shown["consecutive_failures"] == 3
    assert len(sink.requests_to("/t")) == 3

    sink.statuses["/t"] = 200
    # held, not dropped (the first probe is `reenable_after`, 10 minutes, away)
    held = [post(gateway, token, {"event_type": "job_completed", "n": n}) for n in (3, 4)]
    time.sleep(QUIET_SECONDS)
    assert len(sink.requests_to("/t")) == 3
    for event_id in held:
        assert only_delivery(gateway, event_id)["status"] == "held"
    listed = gateway.admin.get("/v1/deliveries", params={"target_id": target["id"]}).json()
    assert len(listed["data"]) == 5

    patched = gateway.admin.patch(f"/v1/webhook-targets/{target['id']}", json={"status": "active"})
    assert patched.json()["status"] == "active"
    assert patched.json()["consecutive_failures"] == 0
    for event_id in held:
        delivery_when(gateway, only_delivery(gateway, event_id)["id"], "succeeded")
    resumed = post(gateway, token, {"event_type": "job_completed", "n": 5})
    received = sink.wait_for(6, "/t", timeout=5.0)
    assert [r.json()["data"]["n"] for r in received[3:]] == [3, 4, 5]
    delivery_when(gateway, only_delivery(gateway, resumed)["id"], "succeeded")


def test_a_success_resets_the_failure_count(gateway: harness.Gateway, sink: harness.Sink) -> None:
    target = create_target(gateway, url=sink.url("/t"), retry="none", disable_after=2)
    _, token = gateway.create_app("acme")
    path = f"/v1/webhook-targets/{target['id']}"
    # The target's count is written just after the delivery's outcome: wait for each one.
    for status, failures in ((500, 1), (200, 0), (500, 1)):
        sink.statuses["/t"] = status
        event_id = post(gateway, token, {"event_type": "x"})
        outcome = "succeeded" if status == 200 else "failed"
        delivery_when(gateway, only_delivery(gateway, event_id)["id"], outcome)
        harness.wait_until(
            lambda n=failures: gateway.admin.get(path).json()["consecutive_failures"] == n
        )
    shown = gateway.admin.get(path).json()
    assert shown["status"] == "active"
    assert shown["consecutive_failures"] == 1


def test_gone_disables_a_target_at_once(gateway: harness.Gateway, sink: harness.Sink) -> None:
    sink.statuses["/gone"] = 410
    target = create_target(gateway, url=sink.url("/gone"), retry="standard", disable_after=3)
    _, token = gateway.create_app("acme")
    event_id = post(gateway, token, {"event_type": "job_completed"})
    delivery = delivery_when(gateway, only_delivery(gateway, event_id)["id"], "failed")
    assert delivery["attempt_count"] == 1
    assert delivery["next_attempt_at"] is None
    assert delivery["attempts"][0]["status_code"] == 410
    wait_target_status(gateway, target["id"], "disabled")
    later = post(gateway, token, {"event_type": "job_completed"})
    # held at ingest, or by the dispatcher if ingest's view had not caught up yet
    delivery_when(gateway, only_delivery(gateway, later)["id"], "held")
    assert len(sink.requests_to("/gone")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_pushes_the_next_attempt_out(
    gateway: harness.Gateway, sink: harness.Sink, status: int
) -> None:
    sink.statuses["/busy"] = status
    sink.headers["/busy"] = {"Retry-After": "2"}
    create_target(gateway, url=sink.url("/busy"), retry=[0.1, 0.1])
    _, token = gateway.create_app("acme")
    event_id = post(gateway, token, {"event_type": "job_completed"})
    delivery_id = only_delivery(gateway, event_id)["id"]
    first = attempted(gateway, delivery_id)
    sink.statuses["/busy"] = 200  # only now: the first answer must have been `status`
    if first["status"] == "pending" and first["attempt_count"] == 1:
        wait = epoch(first["next_attempt_at"]) - epoch(first["attempts"][0]["at"])
        assert wait >= 1.9, wait
    delivery = delivery_when(gateway, delivery_id, "succeeded")
    received = sink.requests_to("/busy")
    assert [a["status_code"] for a in delivery["attempts"]] == [status, 200]
    assert len(received) == 2
    assert received[1].at - received[0].at >= 1.9


def test_manual_retry_resends_with_the_same_webhook_id(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    sink.statuses["/t"] = 500
    create_target(gateway, url=sink.url("/t"), retry="none", disable_after=None)
    _, token = gateway.create_app("acme")
    event_id = post(gateway, token, {"event_type": "job_completed"})
    delivery_id = only_delivery(gateway, event_id)["id"]
    delivery_when(gateway, delivery_id, "failed")

    sink.statuses["/t"] = 200
    response = gateway.admin.post(f"/v1/deliveries/{delivery_id}/retry")
    assert response.status_code == 202, response.text
    assert response.json()["id"] == delivery_id
    assert response.json()["status"] in ("pending", "succeeded")
    delivery = delivery_when(gateway, delivery_id, "succeeded", timeout=5.0)
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    first, second = sink.wait_for(2, "/t")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery_id
    assert first.body == second.body

    missing = gateway.admin.post("/v1/deliveries/dlv_nope/retry")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_recover_resends_failed_deliveries_per_target(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    sink.statuses["/a"] = sink.statuses["/b"] = 500
    a = create_target(gateway, url=sink.url("/a"), retry="none", disable_after=None)
    create_target(gateway, url=sink.url("/b"), retry="none", disable_after=None)
    _, token = gateway.create_app("acme")
    since = time.time() - 1
    event_ids = [post(gateway, token, {"event_type": "job_completed", "n": n}) for n in (1, 2)]
    for event_id in event_ids:
        for summary in gateway.admin.get(f"/v1/events/{event_id}").json()["deliveries"]:
            delivery_when(gateway, summary["id"], "failed")
    sink.statuses["/a"] = sink.statuses["/b"] = 200

    response = gateway.admin.post(
        "/v1/deliveries/recover", json={"since": since, "target_id": a["id"]}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["requeued"] == 2
    first_ids = {r.headers["webhook-id"] for r in sink.requests_to("/a")}
    assert set(body["delivery_ids"]) == first_ids
    again = sink.wait_for(4, "/a", timeout=5.0)
    assert [r.headers["webhook-id"] for r in again[2:]].count(again[0].headers["webhook-id"]) == 1
    assert {r.headers["webhook-id"] for r in again[2:]} == first_ids
    for delivery_id in first_ids:
        delivery_when(gateway, delivery_id, "succeeded")
    time.sleep(QUIET_SECONDS)
    assert len(sink.requests_to("/b")) == 2

    rfc3339 = datetime.fromtimestamp(since).astimezone().isoformat()
    everything = gateway.admin.post("/v1/deliveries/recover", json={"since": rfc3339})
    assert everything.status_code == 202
    assert everything.json()["requeued"] == 2  # only /b's are still failed
    sink.wait_for(4, "/b", timeout=5.0)
    b_ids = {r.headers["webhook-id"] for r in sink.requests_to("/b")}
    assert len(b_ids) == 2

    refused = gateway.admin.post("/v1/deliveries/recover", json={"target_id": a["id"]})
    assert refused.status_code == 422
    assert refused.json()["field"] == "since"


def test_rule_action_with_disable_after_stops_after_consecutive_failures(
    settings: Settings, sink: harness.Sink
) -> None:
    sink.statuses["/r"] = 500
    write_rules(
        settings,
        f"""
[[rules]]
id = "fragile"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/r")}"
  retry = "none"
  disable_after = 2
""",
    )
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        for n in range(2):
            event_id = post(gateway, token, {"event_type": "x", "n": n})
            delivery_when(gateway, only_delivery(gateway, event_id)["id"], "failed")
        third = post(gateway, token, {"event_type": "x", "n": 2})
        delivery = delivery_when(gateway, only_delivery(gateway, third)["id"], "skipped")
    assert delivery["attempts"][0]["status_code"] is None
    assert "disabled after consecutive failures" in delivery["attempts"][0]["error"]
    assert len(sink.requests_to("/r")) == 2
