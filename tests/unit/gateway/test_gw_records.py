"""The JSON shapes the admin API and the CLI print for stored records."""

from __future__ import annotations

import dataclasses

from actions import Attempt, Delivery
from gateway.models import Event, WebhookTarget
from gateway.records.shapes import delivery_json, event_json, payload_of, target_json

AT = 1_795_428_000.0  # 2026-11-23T10:00:00Z


def _delivery(**fields: object) -> Delivery:
    base: dict[str, object] = {
        "id": "dlv_1",
        "event_id": "evt_1",
        "action_type": "webhook",
        "url": "https://crm.example/hook",
        "rule_id": "forward",
        "created_at": AT,
        "next_attempt_at": AT + 30,
        "attempt_count": 1,
        "attempts": (
            Attempt(
                at=AT + 0.25,
                status_code=503,
                latency_ms=12.34567,
                error="HTTP 503",
                response_excerpt="busy",
            ),
        ),
    }
    base.update(fields)
    return Delivery(**base)  # type: ignore[arg-type]


def test_a_pending_delivery_shows_when_it_is_tried_next_and_its_attempts() -> None:
    out = delivery_json(_delivery())
    assert out["status"] == "pending"
    assert out["next_attempt_at"] == "2026-11-23T10:00:30.000Z"
    assert out["created_at"] == "2026-11-23T10:00:00.000Z"
    (attempt,) = out["attempts"]
    assert attempt["at"] == "2026-11-23T10:00:00.250Z"
    assert attempt["status_code"] == 503
    assert attempt["latency_ms"] == 12.346
    assert attempt["error"] == "HTTP 503"
    assert attempt["response_excerpt"] == "busy"


def test_a_finished_delivery_has_no_next_attempt_and_lists_may_omit_attempts() -> None:
    out = delivery_json(_delivery(status="succeeded"), attempts=False)
    assert out["next_attempt_at"] is None
    assert "attempts" not in out


def test_payload_is_json_when_it_parses_and_text_otherwise() -> None:
    event = Event(id="evt_1", app_id="app_1", event_type=None, received_at=AT, payload=b'{"a":1}')
    assert payload_of(event) == {"a": 1}
    raw = Event(id="evt_2", app_id="app_1", event_type=None, received_at=AT, payload=b"\xffno")
    assert payload_of(raw) == "\ufffdno"


def test_an_event_with_its_deliveries_and_idempotency_key() -> None:
    event = Event(
        id="evt_1",
        app_id="app_1",
        event_type="job.completed",
        received_at=AT,
        payload=b'{"job_id": 7}',
        headers={"user-agent": "crm/1"},
        matched_rules=("forward",),
        idempotency_key="k-1",
    )
    out = event_json(event, [_delivery()])
    assert out["received_at"] == "2026-11-23T10:00:00.000Z"
    assert out["matched_rules"] == ["forward"]
    assert out["idempotency_key"] == "k-1"
    assert out["payload"] == {"job_id": 7}
    assert [d["id"] for d in out["deliveries"]] == ["dlv_1"]
    assert "attempts" not in out["deliveries"][0]
    bare = event_json(dataclasses.replace(event, idempotency_key=None), payload=False)
    assert "payload" not in bare and "idempotency_key" not in bare and "deliveries" not in bare


def test_a_target_shows_its_secret_only_when_asked() -> None:
    target = WebhookTarget(
        id="wht_1",
        url="https://crm.example/hook",
        secret="whsec_c2VjcmV0",
        events=("job.completed",),
        retry=(1.0, 10.0),
        created_at=AT,
        updated_at=AT + 1,
    )
    out = target_json(target)
    assert "secret" not in out
    assert "whsec_c2VjcmV0" not in str(out)
    assert out["events"] == ["job.completed"]
    assert out["retry"] == [1.0, 10.0]
    assert out["updated_at"] == "2026-11-23T10:00:01.000Z"
    assert target_json(target, secret=True)["secret"] == "whsec_c2VjcmV0"
    named = WebhookTarget(id="wht_2", url="https://x.example/", secret="s", retry="standard")
    assert target_json(named)["retry"] == "standard"
