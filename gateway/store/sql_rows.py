"""Row shapes the two SQL stores (SQLite, PostgreSQL) share: the target columns and their
conversion, the event row, and the leading columns of a delivery row. One definition, so
a column added to targets lands in both backends at the same index (three features added
target columns in one week; two copies of these had to be kept in step by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from actions.model import Delivery
from gateway.models import Event, WebhookTarget

TARGET_COLS = (
    "id, url, secret, events, filter, status, retry, disable_after, description, created_at, "
    "updated_at, consecutive_failures, rate, burst, reenable_after, disabled_at, next_probe_at, "
    "probe_interval, probe_delivery_id, ordering, ordering_key"
)
TARGET_MARKS = len(TARGET_COLS.split(", "))


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def delivery_fields(d: Delivery, body: Any) -> tuple[Any, ...]:
    """The first 16 columns of a delivery row in both stores (id to headers), with the body
    as each store keeps it; the lease, host, rate-limit and ordering columns follow in each
    store's own order."""
    return (
        d.id,
        d.event_id,
        d.rule_id,
        d.target_id,
        d.action_type,
        d.url,
        d.status,
        body,
        to_json(d.retry),
        d.secret_env,
        d.timeout_seconds,
        d.disable_after,
        d.created_at,
        d.next_attempt_at,
        d.attempt_count,
        to_json(d.headers),
    )


def event(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        app_id=row[1],
        event_type=row[2],
        received_at=row[3],
        payload=bytes(row[4]),
        headers=orjson.loads(row[5]),
        matched_rules=tuple(orjson.loads(row[6])),
        idempotency_key=row[7],
    )


def target_row(t: WebhookTarget) -> tuple[Any, ...]:
    return (
        t.id,
        t.url,
        t.secret,
        to_json(list(t.events)),
        None if t.filter is None else to_json(t.filter),
        t.status,
        to_json(t.retry if isinstance(t.retry, str) else list(t.retry)),
        t.disable_after,
        t.description,
        t.created_at,
        t.updated_at,
        t.consecutive_failures,
        t.rate,
        t.burst,
        t.reenable_after,
        t.disabled_at,
        t.next_probe_at,
        t.probe_interval,
        t.probe_delivery_id,
        t.ordering,
        None if t.ordering_key is None else to_json(t.ordering_key),
    )


def target(row: Sequence[Any]) -> WebhookTarget:
    retry = orjson.loads(row[6])
    return WebhookTarget(
        id=row[0],
        url=row[1],
        secret=row[2],
        events=tuple(orjson.loads(row[3])),
        filter=None if row[4] is None else orjson.loads(row[4]),
        status=row[5],
        retry=retry if isinstance(retry, str) else tuple(retry),
        disable_after=row[7],
        description=row[8],
        created_at=row[9],
        updated_at=row[10],
        consecutive_failures=row[11],
        rate=row[12],
        burst=row[13],
        reenable_after=row[14],
        disabled_at=row[15],
        next_probe_at=row[16],
        probe_interval=row[17],
        probe_delivery_id=row[18],
        ordering=row[19],
        ordering_key=None if row[20] is None else orjson.loads(row[20]),
    )
