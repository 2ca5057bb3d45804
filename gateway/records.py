"""JSON shapes of stored records (DESIGN §9), shared by the admin API and the CLI."""

from __future__ import annotations

import time
from typing import Any

import orjson

from actions import Attempt, Delivery, rfc3339
from gateway.models import Event, WebhookTarget


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "at": rfc3339(attempt.at),
        "status_code": attempt.status_code,
        "latency_ms": round(attempt.latency_ms, 3),
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def shown_status(delivery: Delivery, now: float) -> str:
    """The status a reader sees: a pending delivery not yet tried whose first attempt
    lies ahead (a delayed action) is `scheduled`; the store keeps it `pending`, so it is
    claimed when due by the same queue as every other delivery."""
    if (
        delivery.status == "pending"
        and delivery.attempt_count == 0
        and delivery.next_attempt_at is not None
        and delivery.next_attempt_at > now
    ):
        return "scheduled"
    return delivery.status


def delivery_json(delivery: Delivery, *, attempts: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "rule_id": delivery.rule_id,
        "target_id": delivery.target_id,
        "action_type": delivery.action_type,
        "url": delivery.url,
        "status": shown_status(delivery, time.time()),
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": _time(
            delivery.next_attempt_at if delivery.status == "pending" else None
        ),
        "created_at": _time(delivery.created_at),
    }
    if attempts:
        out["attempts"] = [attempt_json(a) for a in delivery.attempts]
    return out


def payload_of(event: Event) -> Any:
    try:
        return orjson.loads(event.payload)
    except orjson.JSONDecodeError:
        return event.payload.decode("utf-8", "replace")


def event_json(
    event: Event, deliveries: list[Delivery] | None = None, *, payload: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id,
        "app_id": event.app_id,
        "event_type": event.event_type,
        "received_at": rfc3339(event.received_at),
        "matched_rules": list(event.matched_rules),
        "headers": event.headers,
    }
    if event.idempotency_key is not None:
        out["idempotency_key"] = event.idempotency_key
    if payload:
        out["payload"] = payload_of(event)
    if deliveries is not None:
        out["deliveries"] = [delivery_json(d, attempts=False) for d in deliveries]
    return out


def target_json(target: WebhookTarget, *, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": target.id,
        "url": target.url,
        "events": list(target.events),
        "filter": target.filter,
        "status": target.status,
        "retry": target.retry if isinstance(target.retry, str) else list(target.retry),
        "disable_after": target.disable_after,
        "description": target.description,
        "created_at": rfc3339(target.created_at),
        "updated_at": rfc3339(target.updated_at),
        "consecutive_failures": target.consecutive_failures,
    }
    if secret:
        out["secret"] = target.secret
    return out
