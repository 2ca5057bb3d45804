"""Rule actions end to end: a signed `webhook` with a templated body, and `forward`.

A real gateway (uvicorn in a thread) sends to a real HTTP sink on loopback; what the sink
received is checked byte for byte, and the signatures with the `standardwebhooks` library
and a plain HMAC computed here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import harness
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from gateway.config import Settings

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"e2e-delivery-webhook-secret-0001").decode()


def write_rules(settings: Settings, text: str, name: str = "rules.toml") -> None:
    directory = Path(settings.rules.dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


def delivery_when(
    gateway: harness.Gateway, delivery_id: str, status: str, timeout: float = 10.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = gateway.admin.get(f"/v1/deliveries/{delivery_id}").json()
        return body if body["status"] == status else None

    result: dict[str, Any] = harness.wait_until(check, timeout)
    return result


@pytest.fixture
def signed_rule(
    settings: Settings, sink: harness.Sink, monkeypatch: pytest.MonkeyPatch
) -> harness.Sink:
    harness.track_secret(SECRET)
    monkeypatch.setenv("E2E_CRM_SECRET", SECRET)
    write_rules(
        settings,
        f"""
[[rules]]
id = "job-completed-thank-you"
apps = ["acme-crm"]
event_types = ["job_completed"]
when = {{ "!!" = {{ var = "phone" }} }}

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/thanks")}"
  secret_env = "E2E_CRM_SECRET"
  retry = "none"

  [rules.actions.body]
  to = {{ e164 = {{ var = "phone" }} }}
  text = {{ cat = ["Thanks ", {{ var = "name" }}, "!"] }}
""",
    )
    return sink


def test_rule_webhook_delivers_rendered_signed_body(
    signed_rule: harness.Sink, gateway: harness.Gateway
) -> None:
    sink = signed_rule
    _, token = gateway.create_app("acme-crm")
    event = {"event_type": "job_completed", "phone": "(415) 555-2671", "name": "Ada"}
    response = gateway.post_event(token, event)
    assert response.status_code == 202
    event_id = response.json()["event_id"]

    [received] = sink.wait_for(1, "/thanks", timeout=2.0)
    assert received.method == "POST"
    assert received.body == b'{"to":"+14155552671","text":"Thanks Ada!"}'
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"].startswith("hookgate/")

    # Standard Webhooks, verified by the reference library as a receiver would.
    assert Webhook(SECRET).verify(received.body, received.headers) == {
        "to": "+14155552671",
        "text": "Thanks Ada!",
    }
    # The plain signature is an HMAC-SHA256 of the body with the decoded secret.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = hmac.new(key, received.body, hashlib.sha256).hexdigest()
    assert received.headers["x-webhook-signature"] == f"sha256={expected}"
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60

    stored = gateway.admin.get(f"/v1/events/{event_id}").json()
    assert stored["matched_rules"] == ["job-completed-thank-you"]
    [summary] = stored["deliveries"]
    assert summary["rule_id"] == "job-completed-thank-you"
    assert summary["target_id"] is None
    assert summary["action_type"] == "webhook"
    assert summary["url"] == sink.url("/thanks")
    assert received.headers["webhook-id"] == summary["id"]

    delivery = delivery_when(gateway, summary["id"], "succeeded")
    assert delivery["event_id"] == event_id
    assert delivery["attempt_count"] == 1
    assert delivery["next_attempt_at"] is None
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["error"] is None
    assert attempt["latency_ms"] > 0
    assert attempt["response_excerpt"] == '{"ok":true}'
    assert attempt["at"].endswith("Z")


def test_rule_webhook_skips_events_its_condition_refuses(
    signed_rule: harness.Sink, gateway: harness.Gateway
) -> None:
    sink = signed_rule
    _, token = gateway.create_app("acme-crm")
    _, other_token = gateway.create_app("other-crm")
    no_phone = gateway.post_event(token, {"event_type": "job_completed", "name": "Bo"})
    other_app = gateway.post_event(other_token, {"event_type": "job_completed", "phone": "1"})
    other_type = gateway.post_event(token, {"event_type": "job_started", "phone": "1"})
    marker = gateway.post_event(token, {"event_type": "job_completed", "phone": "+14155550000"})
    for response in (no_phone, other_app, other_type, marker):
        assert response.status_code == 202
    for response in (no_phone, other_app, other_type):
        stored = gateway.admin.get(f"/v1/events/{response.json()['event_id']}").json()
        assert stored["matched_rules"] == []
        assert stored["deliveries"] == []
    # Deliveries go out in no guaranteed order, but the three above created none at all.
    sink.wait_for(1, "/thanks")
    assert [r.json()["to"] for r in sink.requests_to("/thanks")] == ["+14155550000"]


def forward_rules(settings: Settings, sink: harness.Sink) -> None:
    write_rules(
        settings,
        f"""
[[rules]]
id = "forward-all"
apps = ["chekkit"]

  [[rules.actions]]
  type = "forward"
  url = "{sink.url("/forward")}"
""",
    )


@pytest.mark.parametrize(
    ("raw", "event_type"),
    [
        # Whitespace, an escaped character and a float spelling a re-encoder would change.
        (
            b'{ "type": "message.inbound",  "text": "caf\\u00e9", "amount": 1.50 }',
            "message.inbound",
        ),
        (b'{"event":"message.outbound","n":[1, 2 ,3]}\n', "message.outbound"),
    ],
)
def test_forward_adds_event_type_and_keeps_every_other_byte(
    settings: Settings,
    sink: harness.Sink,
    raw: bytes,
    event_type: str,
) -> None:
    forward_rules(settings, sink)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        response = gateway.post_event(token, raw)
        assert response.status_code == 202
        [received] = sink.wait_for(1, "/forward", timeout=2.0)
    assert received.json() == {**orjson.loads(raw), "eventType": event_type}
    # The sender's bytes arrive untouched, with only the eventType member added.
    member = b'"eventType":' + orjson.dumps(event_type)
    stripped = raw.strip()
    assert received.body in (
        stripped[:1] + member + b"," + stripped[1:],
        stripped[:-1] + b"," + member + b"}",
    )
    assert "webhook-signature" not in received.headers
    assert received.headers["user-agent"].startswith("hookgate/")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"eventType": "message.inbound", "type": "sms", "text": "hi \\u00e9"}',
        b'{"text": "no type at all", "amount": 1.50}',
    ],
)
def test_forward_sends_event_unchanged_when_event_type_present_or_unknown(
    settings: Settings, sink: harness.Sink, raw: bytes
) -> None:
    forward_rules(settings, sink)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        assert gateway.post_event(token, raw).status_code == 202
        [received] = sink.wait_for(1, "/forward", timeout=2.0)
    assert received.body == raw


def test_forward_default_retry_is_a_single_attempt(settings: Settings, sink: harness.Sink) -> None:
    forward_rules(settings, sink)
    sink.statuses["/forward"] = 500
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        response = gateway.post_event(token, {"type": "message.inbound", "text": "hi"})
        stored = gateway.admin.get(f"/v1/events/{response.json()['event_id']}").json()
        [summary] = stored["deliveries"]
        delivery = delivery_when(gateway, summary["id"], "failed")
    assert delivery["attempt_count"] == 1
    assert delivery["attempts"][0]["status_code"] == 500
    assert delivery["attempts"][0]["error"] == "HTTP 500"
    assert len(sink.requests_to("/forward")) == 1
