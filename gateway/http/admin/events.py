"""`/v1/events`: list and read stored events; replay one against today's rules."""

from __future__ import annotations

import time
from typing import TypedDict

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import Delivery, plan_deliveries
from gateway.errors import NotFound
from gateway.http.admin import gateway_of
from gateway.http.admin_io import (
    JSONResponse,
    parse_cursor,
    parse_limit,
    parse_time,
    query_params,
)
from gateway.http.openapi import Operation, Query, operation
from gateway.models import Event
from gateway.records.shapes import DeliveryRecord, EventRecord, delivery_json, event_json
from gateway.runtime import Gateway

SINCE = Query("since", "only records created at or after this time (RFC 3339 or epoch seconds)")
LIMIT = Query("limit", "page size, 1-500 (default 50)", {"type": "string", "pattern": "^[0-9]+$"})


class EventList(TypedDict):
    data: list[EventRecord]
    next_cursor: str | None


class Replay(TypedDict):
    event_id: str
    matched_rules: list[str]
    deliveries: list[DeliveryRecord]


async def _event(request: Request) -> Event:
    event = await gateway_of(request).store.get_event(request.path_params["event_id"])
    if event is None:
        raise NotFound(f"no event with id {request.path_params['event_id']}")
    return event


@operation(
    Operation(
        "List events, newest first",
        "events",
        response=EventList,
        query=(
            Query("app_id", "only this app's events"),
            Query("event_type", "only events of this type"),
            SINCE,
            Query("cursor", "the next_cursor of the previous page"),
            LIMIT,
        ),
        errors={422: "validation_error: since or limit is invalid"},
    )
)
async def list_events(request: Request) -> Response:
    q = query_params(request, "app_id", "event_type", "since", "cursor", "limit")
    page = await gateway_of(request).store.list_events(
        app_id=q.get("app_id") or None,
        event_type=q.get("event_type") or None,
        since=parse_time(q.get("since"), "since"),
        cursor=parse_cursor(q, "evt_"),
        limit=parse_limit(request),
    )
    return JSONResponse(
        {"data": [event_json(e) for e in page.data], "next_cursor": page.next_cursor}
    )


@operation(
    Operation("Read an event with its matches and deliveries", "events", response=EventRecord)
)
async def read(request: Request) -> Response:
    event = await _event(request)
    deliveries = await gateway_of(request).store.deliveries_for_event(event.id)
    return JSONResponse(event_json(event, deliveries))


async def replay_event(gw: Gateway, event: Event) -> tuple[list[str], list[Delivery]]:
    """Match the stored event against the current rules and queue what matches now;
    answers the matched rule ids and the queued deliveries (shared with the console)."""
    app = gw.apps.by_id.get(event.app_id)
    payload = orjson.loads(event.payload)
    matches = gw.rules.current.match(
        app.name if app else event.app_id, payload, event_type=event.event_type
    )
    deliveries = plan_deliveries(matches, event.id, payload, time.time())
    if deliveries:
        lease = gw.lease()
        await gw.store.add_deliveries(deliveries, lease)
        gw.dispatch(
            deliveries,
            gw.event_info(
                event.id, event.app_id, event.event_type, event.received_at, event.payload
            ),
            lease,
        )
    return [m.rule.id for m in matches], deliveries


@operation(Operation("Match again against today's rules and fire", "events", 202, Replay))
async def replay(request: Request) -> Response:
    """Match the stored event against the current rules and queue what matches now."""
    event = await _event(request)
    matched, deliveries = await replay_event(gateway_of(request), event)
    return JSONResponse(
        {
            "event_id": event.id,
            "matched_rules": matched,
            "deliveries": [delivery_json(d, attempts=False) for d in deliveries],
        },
        status_code=202,
    )


routes = [
    Route("/events", list_events, methods=["GET"]),
    Route("/events/{event_id}", read, methods=["GET"]),
    Route("/events/{event_id}/replay", replay, methods=["POST"]),
]
