"""Rows of the SQLite store and the records they hold: one function each way per table.

Rows built for writing carry byte columns (event payloads, delivery bodies) as latin-1
text, a lossless one-to-one mapping that crosses the pipe to the writer process as JSON
without a per-row callback; rows read back carry bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from actions.model import Attempt, Delivery, Lease, RateLimit, delivery_host
from gateway.models import App, Event
from gateway.store.sql_rows import delivery_fields, to_json


def app_row(app: App) -> tuple[Any, ...]:
    return (
        app.id,
        app.name,
        app.token_hash,
        int(app.enabled),
        app.rate,
        app.burst,
        None if app.schema is None else to_json(app.schema),
        app.signing_secret,
        app.created_at,
        app.updated_at,
        app.previous_token_hash,
        app.previous_token_expires_at,
        app.signature_scheme,
    )


def app(row: Sequence[Any]) -> App:
    return App(
        id=row[0],
        name=row[1],
        token_hash=row[2],
        enabled=bool(row[3]),
        rate=row[4],
        burst=row[5],
        schema=None if row[6] is None else orjson.loads(row[6]),
        signing_secret=row[7],
        created_at=row[8],
        updated_at=row[9],
        previous_token_hash=row[10],
        previous_token_expires_at=row[11],
        signature_scheme=row[12],
    )


def event_row(event: Event) -> tuple[Any, ...]:
    """The row as sent to the writer process: the payload as latin-1 text (see there)."""
    return (
        event.id,
        event.app_id,
        event.event_type,
        event.received_at,
        event.payload.decode("latin-1"),
        to_json(event.headers),
        to_json(event.matched_rules),
        event.idempotency_key,
    )


def delivery_row(d: Delivery, lease: Lease | None) -> tuple[Any, ...]:
    """The row as sent to the writer process: the body as latin-1 text."""
    return (
        *delivery_fields(d, None if d.body is None else d.body.decode("latin-1")),
        None if d.rate_limit is None else to_json(d.rate_limit.to_list()),
        d.ordering_key,
        # an ordered delivery is never held at commit: a claim decides when it heads its key
        None if lease is None or d.ordering_key is not None else lease.until,
        None if lease is None or d.ordering_key is not None else lease.token,
        delivery_host(d.url),
        None,  # ordering_seq: numbered by the writer, in commit order
    )


def delivery(row: Sequence[Any], attempts: tuple[Attempt, ...] = ()) -> Delivery:
    return Delivery(
        id=row[0],
        event_id=row[1],
        rule_id=row[2],
        target_id=row[3],
        action_type=row[4],
        url=row[5],
        status=row[6],
        body=None if row[7] is None else bytes(row[7]),
        retry=tuple(orjson.loads(row[8])),
        secret_env=row[9],
        timeout_seconds=row[10],
        disable_after=row[11],
        created_at=row[12],
        next_attempt_at=row[13],
        attempt_count=row[14],
        headers=tuple(tuple(h) for h in orjson.loads(row[15])),
        rate_limit=None if row[16] is None else RateLimit.from_list(orjson.loads(row[16])),
        attempts=attempts,
        ordering_key=row[17],
    )


def delivery_from_json(row: list[Any]) -> Delivery:
    return Delivery(
        id=row[0],
        event_id=row[1],
        rule_id=row[2],
        target_id=row[3],
        action_type=row[4],
        url=row[5],
        status=row[6],
        body=None if row[7] is None else row[7].encode(),
        retry=tuple(row[8]),
        secret_env=row[9],
        timeout_seconds=row[10],
        disable_after=row[11],
        created_at=row[12],
        next_attempt_at=row[13],
        attempt_count=row[14],
        headers=tuple((name, value) for name, value in row[15]),
        rate_limit=RateLimit.from_list(row[16]),
        ordering_key=row[17],
    )


def exchange(a: Attempt) -> tuple[str | None, str | None]:
    """The `request` and `response_headers` columns of an attempt (JSON, or NULL)."""
    request = None
    if a.request_method is not None:
        request = to_json(
            {
                "method": a.request_method,
                "url": a.request_url,
                "headers": a.request_headers,
                "body": a.request_body,
            }
        )
    response = to_json(a.response_headers) if a.response_headers else None
    return request, response


def attempt(row: Sequence[Any]) -> Attempt:
    """An attempt from its row as `SqliteStore.get_delivery` selects it (every column;
    `request` and `response_headers` are NULL on attempts from before they were kept)."""
    request = orjson.loads(row[6]) if row[6] is not None else {}
    response = orjson.loads(row[7]) if row[7] is not None else []
    return Attempt(
        at=row[0],
        status_code=row[1],
        latency_ms=row[2],
        error=row[3],
        response_excerpt=row[4],
        retry_after=row[5],
        request_method=request.get("method"),
        request_url=request.get("url"),
        request_headers=tuple((k, v) for k, v in request.get("headers", ())),
        request_body=request.get("body"),
        response_headers=tuple((k, v) for k, v in response),
        rate_slot_at=row[8],
    )


def attempt_rows(deliveries: Sequence[Delivery]) -> list[tuple[Any, ...]]:
    """Attempts that come with new deliveries (a template that failed at ingest)."""
    return [
        (
            d.id,
            n,
            a.at,
            a.status_code,
            a.latency_ms,
            a.error,
            a.response_excerpt,
            a.retry_after,
            *exchange(a),
            a.rate_slot_at,
        )
        for d in deliveries
        for n, a in enumerate(d.attempts, start=1)
    ]
