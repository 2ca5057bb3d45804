"""The webhook targets API end to end: CRUD, validation, the §6 envelope, filters, test sends."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from actions import decode_secret

pytestmark = pytest.mark.e2e

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def create_target(gateway: harness.Gateway, **fields: Any) -> dict[str, Any]:
    response = gateway.admin.post("/v1/webhook-targets", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    harness.track_secret(body["secret"])
    return body


def assert_signed(received: harness.Received, secret: str) -> None:
    Webhook(secret).verify(received.body, received.headers)
    plain = hmac.new(decode_secret(secret), received.body, hashlib.sha256).hexdigest()
    assert received.headers["x-webhook-signature"] == f"sha256={plain}"


def test_target_crud(gateway: harness.Gateway, sink: harness.Sink) -> None:
    created = create_target(
        gateway,
        url=sink.url("/a"),
        events=["job_completed"],
        filter={"==": [{"var": "status"}, "done"]},
        retry=[1, 2],
        description="CRM",
    )
    assert created["id"].startswith("wht_")
    assert created["secret"].startswith("whsec_")
    assert len(decode_secret(created["secret"])) >= 24
    assert created["url"] == sink.url("/a")
    assert created["events"] == ["job_completed"]
    assert created["filter"] == {"==": [{"var": "status"}, "done"]}
    assert created["retry"] == [1.0, 2.0]
    assert created["status"] == "active"
    assert created["disable_after"] == 3
    assert created["description"] == "CRM"
    assert RFC3339.fullmatch(created["created_at"])
    target_id = created["id"]

    read = gateway.admin.get(f"/v1/webhook-targets/{target_id}").json()
    assert "secret" not in read
    assert {k: v for k, v in created.items() if k != "secret"} == read
    listed = gateway.admin.get("/v1/webhook-targets").json()
    assert listed == {"data": [read], "next_cursor": None}

    patched = gateway.admin.patch(
        f"/v1/webhook-targets/{target_id}",
        json={"url": sink.url("/b"), "events": [], "filter": None, "status": "disabled"},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["url"], body["events"], body["filter"], body["status"]) == (
        sink.url("/b"),
        [],
        None,
        "disabled",
    )
    assert "secret" not in body
    assert gateway.admin.get(f"/v1/webhook-targets/{target_id}").json() == body

    # A secret can be given instead of generated.
    given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    harness.track_secret(given)
    assert create_target(gateway, url=sink.url("/c"), secret=given)["secret"] == given

    assert gateway.admin.delete(f"/v1/webhook-targets/{target_id}").status_code == 204
    gone = gateway.admin.get(f"/v1/webhook-targets/{target_id}")
    assert gone.status_code == 404
    assert gone.json()["error"] == "not_found"
    assert gateway.admin.delete(f"/v1/webhook-targets/{target_id}").status_code == 404
    assert gateway.admin.patch(f"/v1/webhook-targets/{target_id}", json={}).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": 42}, "url"),
        ({"url": "https://example.com/x", "events": "job_completed"}, "events"),
        ({"url": "https://example.com/x", "events": [1]}, "events"),
        ({"url": "https://example.com/x", "events": [""]}, "events"),
        ({"url": "https://example.com/x", "filter": {"no_such_op": [1]}}, "filter"),
        ({"url": "https://example.com/x", "retry": "sometimes"}, "retry"),
        ({"url": "https://example.com/x", "retry": [-1]}, "retry"),
        ({"url": "https://example.com/x", "retry": ["5"]}, "retry"),
        ({"url": "https://example.com/x", "secret": "whsec_not base64!"}, "secret"),
        ({"url": "https://example.com/x", "disable_after": 0}, "disable_after"),
        ({"url": "https://example.com/x", "reenable_after": "soon"}, "reenable_after"),
        ({"url": "https://example.com/x", "reenable_after": "0s"}, "reenable_after"),
        ({"url": "https://example.com/x", "reenable_after": -5}, "reenable_after"),
        ({"url": "https://example.com/x", "reenable_after": "7h"}, "reenable_after"),
        ({"url": "https://example.com/x", "reenable_after": True}, "reenable_after"),
        ({"url": "https://example.com/x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_target_is_refused(
    gateway: harness.Gateway, fields: dict[str, Any], field: str
) -> None:
    response = gateway.admin.post("/v1/webhook-targets", json=fields)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["field"] == field
    assert body["detail"]
    assert gateway.admin.get("/v1/webhook-targets").json()["data"] == []


def test_invalid_patch_is_refused_and_changes_nothing(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    target = create_target(gateway, url=sink.url("/a"))
    before = gateway.admin.get(f"/v1/webhook-targets/{target['id']}").json()
    for fields, field in (
        ({"status": "paused"}, "status"),
        ({"reenable_after": "10 minutes"}, "reenable_after"),
        ({"retry": "often"}, "retry"),
        ({"secret": "whsec_notbase64!!"}, "secret"),
        ({"secret": 7}, "secret"),
        ({"url": "gopher://x"}, "url"),
    ):
        response = gateway.admin.patch(f"/v1/webhook-targets/{target['id']}", json=fields)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field
    assert gateway.admin.get(f"/v1/webhook-targets/{target['id']}").json() == before


def test_patch_replaces_the_secret_and_shows_it_once(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    target = create_target(gateway, url=sink.url("/a"))
    new_secret = "whsec_" + "QUJD" * 8
    harness.track_secret(new_secret)
    response = gateway.admin.patch(
        f"/v1/webhook-targets/{target['id']}", json={"secret": new_secret}
    )
    assert response.status_code == 200, response.text
    assert response.json()["secret"] == new_secret
    assert "secret" not in gateway.admin.get(f"/v1/webhook-targets/{target['id']}").json()
    assert gateway.gw.rules.targets[target["id"]].secret == new_secret
    generated = gateway.admin.patch(f"/v1/webhook-targets/{target['id']}", json={"secret": None})
    harness.track_secret(generated.json()["secret"])
    assert generated.json()["secret"].startswith("whsec_")
    assert generated.json()["secret"] != new_secret


def test_subscribed_target_gets_envelope_of_its_event_types_only(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    target = create_target(gateway, url=sink.url("/jobs"), events=["job_completed"])
    all_events = create_target(gateway, url=sink.url("/all"), events=[])
    narrowed = create_target(
        gateway,
        url=sink.url("/big"),
        events=["job_completed"],
        filter={">=": [{"var": "amount"}, 100]},
    )
    _, token = gateway.create_app("acme-crm")

    raw = b'{"event_type": "job_completed", "amount": 250, "note": "caf\\u00e9"}'
    before = time.time()
    completed = gateway.post_event(token, raw)
    small = gateway.post_event(token, {"event_type": "job_completed", "amount": 5})
    started = gateway.post_event(token, {"event_type": "job_started", "amount": 900})
    for response in (completed, small, started):
        assert response.status_code == 202
    completed_id = completed.json()["event_id"]

    jobs = sink.wait_for(2, "/jobs", timeout=2.0)
    sink.wait_for(3, "/all", timeout=2.0)
    [big] = sink.wait_for(1, "/big", timeout=2.0)

    by_event = {r.json()["id"]: r for r in jobs}
    assert set(by_event) == {completed_id, small.json()["event_id"]}
    received = by_event[completed_id]
    envelope = received.json()
    assert list(envelope) == ["id", "type", "timestamp", "app", "data"]
    assert envelope["type"] == "job_completed"
    assert envelope["app"] == "acme-crm"
    assert envelope["data"] == orjson.loads(raw)
    # `data` is the event as the sender posted it, byte for byte.
    assert raw in received.body
    assert RFC3339.fullmatch(envelope["timestamp"])
    stamp = datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00")).timestamp()
    assert before - 1 <= stamp <= time.time() + 1
    assert_signed(received, target["secret"])

    assert big.json()["id"] == completed_id
    assert_signed(big, narrowed["secret"])
    types = sorted(r.json()["type"] for r in sink.requests_to("/all"))
    assert types == ["job_completed", "job_completed", "job_started"]
    for r in sink.requests_to("/all"):
        assert_signed(r, all_events["secret"])

    stored = gateway.admin.get(f"/v1/events/{completed_id}").json()
    rule_ids = {d["target_id"]: d for d in stored["deliveries"]}
    assert set(rule_ids) == {target["id"], all_events["id"], narrowed["id"]}
    assert by_event[completed_id].headers["webhook-id"] == rule_ids[target["id"]]["id"]
    # Nothing else arrives: the target saw job_completed only.
    listed = gateway.admin.get("/v1/deliveries", params={"target_id": target["id"]}).json()
    assert len(listed["data"]) == 2


def test_test_send_delivers_webhook_test_and_returns_the_attempt(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    target = create_target(gateway, url=sink.url("/t"), events=["job_completed"])
    response = gateway.admin.post(f"/v1/webhook-targets/{target['id']}/test")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded"
    assert result["attempt"]["status_code"] == 200
    assert result["attempt"]["error"] is None
    assert result["attempt"]["response_excerpt"] == '{"ok":true}'

    [received] = sink.requests_to("/t")  # sent before the answer
    envelope = received.json()
    assert envelope["type"] == "webhook.test"
    assert envelope["id"].startswith("evt_")
    assert RFC3339.fullmatch(envelope["timestamp"])
    assert received.headers["webhook-id"] == result["delivery_id"]
    assert_signed(received, target["secret"])

    stored = gateway.admin.get(f"/v1/deliveries/{result['delivery_id']}").json()
    assert stored["status"] == "succeeded"
    assert stored["target_id"] == target["id"]
    assert [a["status_code"] for a in stored["attempts"]] == [200]


def test_test_send_reports_a_failing_target(gateway: harness.Gateway, sink: harness.Sink) -> None:
    sink.statuses["/t"] = 503
    target = create_target(gateway, url=sink.url("/t"), disable_after=5)
    response = gateway.admin.post(f"/v1/webhook-targets/{target['id']}/test")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "failed"
    assert result["attempt"]["status_code"] == 503
    assert result["attempt"]["error"] == "HTTP 503"
    assert len(sink.requests_to("/t")) == 1
    assert gateway.admin.post("/v1/webhook-targets/wht_nope/test").status_code == 404


def test_failing_test_sends_never_disable_the_target(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    sink.statuses["/probe"] = 500
    target = create_target(gateway, url=sink.url("/probe"), disable_after=2)
    for _ in range(3):
        result = gateway.admin.post(f"/v1/webhook-targets/{target['id']}/test").json()
        assert result["status"] == "failed"
    read = gateway.admin.get(f"/v1/webhook-targets/{target['id']}").json()
    assert read["status"] == "active"
    assert read["consecutive_failures"] == 0


def test_disabled_target_holds_and_patch_active_releases(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    target = create_target(gateway, url=sink.url("/t"))
    _, token = gateway.create_app("acme-crm")
    patched = gateway.admin.patch(
        f"/v1/webhook-targets/{target['id']}", json={"status": "disabled"}
    )
    assert patched.json()["status"] == "disabled"
    off = gateway.post_event(token, {"event_type": "job_completed", "n": 1})
    stored = gateway.admin.get(f"/v1/events/{off.json()['event_id']}").json()
    assert [d["status"] for d in stored["deliveries"]] == ["held"]
    assert sink.requests_to("/t") == []

    gateway.admin.patch(f"/v1/webhook-targets/{target['id']}", json={"status": "active"})
    on = gateway.post_event(token, {"event_type": "job_completed", "n": 2})
    received = sink.wait_for(2, "/t", timeout=5.0)
    by_id = {r.json()["id"]: r.json()["data"] for r in received}
    assert by_id == {
        off.json()["event_id"]: {"event_type": "job_completed", "n": 1},
        on.json()["event_id"]: {"event_type": "job_completed", "n": 2},
    }


def test_test_send_is_sent_once_by_a_served_gateway(tmp_path: Path, sink: harness.Sink) -> None:
    """`hookgate serve` as deployed (its own delivery mode): a slow test send is sent by the
    request alone, never also claimed and sent again by a dispatcher polling the store."""
    sink.hang.add("/slow")
    env = {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.1",
        "HOOKGATE_DELIVERY_TIMEOUT_SECONDS": "1",
    }
    server = harness.ServerProcess(tmp_path, env, name="test-send")
    try:
        server.start()
        with server.admin() as admin:
            created = admin.post("/v1/webhook-targets", json={"url": sink.url("/slow")})
            assert created.status_code == 201, created.text
            harness.track_secret(created.json()["secret"])
            response = admin.post(f"/v1/webhook-targets/{created.json()['id']}/test")
            assert response.status_code == 200, response.text
            result = response.json()
            time.sleep(0.5)  # room for a second, wrongful send to show up
            delivery = admin.get(f"/v1/deliveries/{result['delivery_id']}").json()
    finally:
        server.stop()
    assert result["status"] == "failed"
    assert result["attempt"]["error"] == "timed out after 1 s"
    assert len(sink.requests_to("/slow")) == 1
    assert delivery["attempt_count"] == 1
