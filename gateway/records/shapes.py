"""JSON shapes of stored records (docs/design.md §9), shared by the admin API and the CLI."""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

import orjson

from actions import Attempt, Delivery, rfc3339
from gateway.models import Event, WebhookTarget
from rules import default_burst

DeliveryState = Literal[
    "scheduled", "pending", "held", "succeeded", "failed", "skipped", "cancelled"
]


class AttemptRequest(TypedDict):
    """What an attempt sent: signature and credential header values shown as "…"."""

    method: str
    url: str | None
    headers: list[list[str]]
    body: str | None


class AttemptResponse(TypedDict):
    """What came back: the status, headers and the first 1 KiB of the body."""

    status: int
    headers: list[list[str]]
    body: str | None


class AttemptRecord(TypedDict):
    """One send of a delivery: when, the answer (or the error) and how long it took; the
    request and response are null when nothing left the process or an older version
    stored the attempt; `rate_slot_at`, when its rate limit granted it its slot (null
    without a rate limit)."""

    at: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None
    request: AttemptRequest | None
    response: AttemptResponse | None
    rate_slot_at: str | None


class _DeliveryFields(TypedDict):
    id: str
    event_id: str
    rule_id: str | None
    target_id: str | None
    action_type: str
    url: str
    status: DeliveryState
    attempt_count: int
    next_attempt_at: str | None
    created_at: str | None


class DeliveryRecord(_DeliveryFields, total=False):
    """A delivery; `attempts` on a read of one delivery, not in lists; `ordering_key` on an
    ordered delivery (sent one at a time with the others of its key, in accept order)."""

    attempts: list[AttemptRecord]
    ordering_key: str


class _EventFields(TypedDict):
    id: str
    app_id: str
    event_type: str | None
    received_at: str
    matched_rules: list[str]
    headers: dict[str, str]


class EventRecord(_EventFields, total=False):
    """A stored event; `payload` and `deliveries` on a read of one event."""

    idempotency_key: str
    payload: Any
    deliveries: list[DeliveryRecord]


class _TargetFields(TypedDict):
    id: str
    url: str
    events: list[str]
    filter: Any
    status: Literal["active", "disabled"]
    retry: str | list[Any]
    disable_after: int | None
    description: str | None
    ordering: Literal["fifo"] | None
    ordering_key: Any
    created_at: str
    updated_at: str
    consecutive_failures: int
    rate: float | None
    burst: int | None
    reenable_after: float
    disabled_at: str | None
    disabled_by: Literal["failures", "api"] | None
    next_probe_at: str | None
    probe_interval_seconds: float | None
    probe_delivery_id: str | None


class TargetRecord(_TargetFields, total=False):
    """A webhook target; `secret` only on create and on a PATCH that sets one."""

    secret: str | None


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def attempt_json(attempt: Attempt) -> AttemptRecord:
    return {
        "at": rfc3339(attempt.at),
        "status_code": attempt.status_code,
        "latency_ms": round(attempt.latency_ms, 3),
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
        # What was sent (signature and credential values shown as "…") and what came back;
        # null on attempts that never left the process or were stored by an older version.
        "request": None
        if attempt.request_method is None
        else {
            "method": attempt.request_method,
            "url": attempt.request_url,
            "headers": [list(pair) for pair in attempt.request_headers],
            "body": attempt.request_body,
        },
        "response": None
        if attempt.status_code is None
        else {
            "status": attempt.status_code,
            "headers": [list(pair) for pair in attempt.response_headers],
            "body": attempt.response_excerpt,
        },
        "rate_slot_at": _time(attempt.rate_slot_at),
    }


def shown_status(delivery: Delivery, now: float) -> DeliveryState:
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


def delivery_json(delivery: Delivery, *, attempts: bool = True) -> DeliveryRecord:
    out: DeliveryRecord = {
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
    if delivery.ordering_key is not None:
        out["ordering_key"] = delivery.ordering_key
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
) -> EventRecord:
    out: EventRecord = {
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


def target_json(target: WebhookTarget, *, secret: bool = False) -> TargetRecord:
    out: TargetRecord = {
        "id": target.id,
        "url": target.url,
        "events": list(target.events),
        "filter": target.filter,
        "status": target.status,
        "retry": target.retry if isinstance(target.retry, str) else list(target.retry),
        "disable_after": target.disable_after,
        "description": target.description,
        "ordering": target.ordering,
        "ordering_key": target.ordering_key,
        "created_at": rfc3339(target.created_at),
        "updated_at": rfc3339(target.updated_at),
        "consecutive_failures": target.consecutive_failures,
        "rate": target.rate,
        # the burst in force: the one set, or the rate's default
        "burst": None if target.rate is None else target.burst or default_burst(target.rate),
        # Held, not dropped: seconds before a target disabled after failures is probed;
        # while disabled, since when, by what, and (after failures) the probe schedule.
        "reenable_after": target.reenable_after,
        "disabled_at": _time(target.disabled_at if target.status == "disabled" else None),
        "disabled_by": None
        if target.status != "disabled"
        else "failures"
        if target.probe_interval is not None
        else "api",
        "next_probe_at": _time(target.next_probe_at),
        "probe_interval_seconds": target.probe_interval,
        "probe_delivery_id": target.probe_delivery_id,
    }
    if secret:
        out["secret"] = target.secret
    return out
