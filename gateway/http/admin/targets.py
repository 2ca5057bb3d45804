"""`/v1/webhook-targets`: subscriptions made through the API, and their test send."""

from __future__ import annotations

import time
from typing import Any, TypedDict

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import Attempt, Delivery, EventInfo, Lease, delivery_id, envelope
from gateway.errors import NotFound
from gateway.http.admin import gateway_of
from gateway.http.admin_io import JSONResponse, parse_cursor, query_params, read_object
from gateway.http.openapi import Operation, Query, operation
from gateway.ids import new_id
from gateway.models import WebhookTarget
from gateway.records import targets as target_records
from gateway.records.shapes import AttemptRecord, TargetRecord, attempt_json, target_json
from gateway.runtime import Gateway


class TargetList(TypedDict):
    data: list[TargetRecord]
    next_cursor: None


class TargetFields(TypedDict, total=False):
    """The fields of a target: `url` required on create; `status` only on a PATCH."""

    url: str
    events: list[str]
    filter: Any
    secret: str | None
    retry: str | list[float]
    disable_after: int | None
    reenable_after: str | float
    description: str | None
    rate: float | None
    burst: int | None
    ordering: str | None
    ordering_key: Any
    status: str


class TestSend(TypedDict):
    delivery_id: str
    status: str
    attempt: AttemptRecord


INVALID = {422: "validation_error: a field is missing, unknown or invalid"}


async def _target(request: Request) -> WebhookTarget:
    target = await gateway_of(request).store.get_target(request.path_params["target_id"])
    if target is None:
        raise NotFound(f"no webhook target with id {request.path_params['target_id']}")
    return target


@operation(
    Operation(
        "Subscribe a URL; returns its secret once",
        "targets",
        201,
        TargetRecord,
        body=TargetFields,
        errors=INVALID,
    )
)
async def create(request: Request) -> Response:
    gw = gateway_of(request)
    target = await target_records.create_target(await read_object(request), gw.settings, gw.logic)
    await gw.store.create_target(target)
    await gw.rules.refresh_targets()
    return JSONResponse(target_json(target, secret=True), status_code=201)


@operation(
    Operation(
        "List webhook targets",
        "targets",
        response=TargetList,
        query=(Query("cursor", "not paged: only an empty cursor is accepted"),),
    )
)
async def list_targets(request: Request) -> Response:
    parse_cursor(query_params(request, "cursor"), None)  # not paged: every record
    targets = await gateway_of(request).store.list_targets()
    return JSONResponse({"data": [target_json(t) for t in targets], "next_cursor": None})


@operation(Operation("Read a webhook target", "targets", response=TargetRecord))
async def read(request: Request) -> Response:
    return JSONResponse(target_json(await _target(request)))


@operation(
    Operation(
        "Update url, events, filter, status, secret, retry, ...",
        "targets",
        response=TargetRecord,
        body=TargetFields,
        errors=INVALID,
    )
)
async def update(request: Request) -> Response:
    gw = gateway_of(request)
    body = await read_object(request)
    before = await _target(request)
    target = await target_records.update_target(before, body, gw.settings, gw.logic)
    target = await target_records.save_update(
        gw.store, before, target, status_given="status" in body
    )
    await gw.rules.refresh_targets()
    if target.status == "active" and before.status != "active":
        gw.wake_delivery()  # what it held is due now
    # A new secret is shown once, as on create (it may have been generated: `null`).
    return JSONResponse(target_json(target, secret="secret" in body))


@operation(Operation("Delete a webhook target", "targets", 204))
async def delete(request: Request) -> Response:
    gw = gateway_of(request)
    target = await _target(request)
    await gw.store.delete_target(target.id)
    await gw.rules.refresh_targets()
    return Response(status_code=204)


@operation(Operation("Send webhook.test now; returns the attempt", "targets", response=TestSend))
async def send_test(request: Request) -> Response:
    """Send a `webhook.test` event to the target now and answer with the attempt."""
    delivery, status, attempt = await send_test_event(gateway_of(request), await _target(request))
    return JSONResponse(
        {"delivery_id": delivery.id, "status": status, "attempt": attempt_json(attempt)}
    )


async def send_test_event(gw: Gateway, target: WebhookTarget) -> tuple[Delivery, str, Attempt]:
    """Send a `webhook.test` event to `target` now: (delivery, status, attempt)."""
    await gw.rules.refresh_targets()
    now = time.time()
    event_id = new_id("evt_", now)
    data = orjson.dumps({"message": "hookgate test event", "target_id": target.id})
    event = EventInfo(event_id, "webhook.test", "hookgate", now, data)
    delivery = Delivery(
        id=delivery_id(now),
        event_id=event_id,
        action_type="webhook",
        url=target.url,
        target_id=target.id,
        body=envelope(event),
        created_at=now,
        next_attempt_at=now,
    )
    # Leased to this request in every delivery mode: sent right here, it must not also be
    # claimed (and sent a second time) by a dispatcher polling the store meanwhile.
    lease = Lease.new(now + gw.dispatch_settings.lease_seconds)
    await gw.store.add_deliveries([delivery], lease)
    attempt, status = await gw.dispatcher.deliver(delivery, event, probe=True, lease=lease)
    return delivery, status, attempt


routes = [
    Route("/webhook-targets", create, methods=["POST"]),
    Route("/webhook-targets", list_targets, methods=["GET"]),
    Route("/webhook-targets/{target_id}", read, methods=["GET"]),
    Route("/webhook-targets/{target_id}", update, methods=["PATCH"]),
    Route("/webhook-targets/{target_id}", delete, methods=["DELETE"]),
    Route("/webhook-targets/{target_id}/test", send_test, methods=["POST"]),
]
