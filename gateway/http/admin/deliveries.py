"""`/v1/deliveries`: the delivery log, manual retry and bulk recovery."""

from __future__ import annotations

import time
from typing import TypedDict, get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import Delivery, DeliveryStatus
from gateway.errors import InvalidInput, NotFound
from gateway.http.admin import gateway_of
from gateway.http.admin_io import (
    ApiError,
    JSONResponse,
    parse_cursor,
    parse_limit,
    parse_time,
    query_params,
    read_object,
    required_time,
)
from gateway.http.openapi import Operation, Query, operation
from gateway.records.shapes import DeliveryRecord, delivery_json
from gateway.runtime import Gateway
from gateway.store import DeliveryFilter

STATUSES = get_args(DeliveryStatus)


class DeliveryList(TypedDict):
    data: list[DeliveryRecord]
    next_cursor: str | None


class Retry(TypedDict, total=False):
    force: bool


class _RecoverFields(TypedDict):
    since: str | float


class Recover(_RecoverFields, total=False):
    target_id: str | None


class Recovered(TypedDict):
    requeued: int
    delivery_ids: list[str]


@operation(
    Operation(
        "Delivery log, newest first",
        "deliveries",
        response=DeliveryList,
        query=(
            Query("status", "pending, succeeded, failed or skipped"),
            Query("target_id", "only deliveries to this webhook target"),
            Query("rule_id", "only deliveries of this rule"),
            Query("event_id", "only deliveries of this event"),
            Query("since", "created at or after this time (RFC 3339 or epoch seconds)"),
            Query("cursor", "the next_cursor of the previous page"),
            Query("limit", "page size, 1-500 (default 50)"),
        ),
        errors={422: "validation_error: status, since or limit is invalid"},
    )
)
async def list_deliveries(request: Request) -> Response:
    q = query_params(
        request, "status", "target_id", "rule_id", "event_id", "since", "cursor", "limit"
    )
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
    flt = DeliveryFilter(
        status=status,  # type: ignore[arg-type]
        target_id=q.get("target_id") or None,
        rule_id=q.get("rule_id") or None,
        event_id=q.get("event_id") or None,
        since=parse_time(q.get("since"), "since"),
    )
    page = await gateway_of(request).store.list_deliveries(
        flt, cursor=parse_cursor(q, "dlv_"), limit=parse_limit(request)
    )
    return JSONResponse(
        {
            "data": [delivery_json(d, attempts=False) for d in page.data],
            "next_cursor": page.next_cursor,
        }
    )


@operation(Operation("Read a delivery with every attempt", "deliveries", response=DeliveryRecord))
async def read(request: Request) -> Response:
    delivery = await gateway_of(request).store.get_delivery(request.path_params["delivery_id"])
    if delivery is None:
        raise NotFound(f"no delivery with id {request.path_params['delivery_id']}")
    return JSONResponse(delivery_json(delivery))


@operation(
    Operation(
        "Retry a delivery now",
        "deliveries",
        202,
        DeliveryRecord,
        body=Retry,
        body_required=False,
        errors={
            409: 'already_succeeded: send {"force": true} to send it again',
            422: "validation_error: force is not a boolean, or an unknown field",
        },
    )
)
async def retry(request: Request) -> Response:
    """Queue the delivery again, due now (same `webhook-id`). A delivery that already
    succeeded is sent again only with `{"force": true}`: a receiver that does not dedupe
    would act on it twice."""
    gw = gateway_of(request)
    delivery_id = request.path_params["delivery_id"]
    body = await read_object(request, optional=True)
    unknown = sorted(set(body) - {"force"})
    if unknown:
        raise InvalidInput(unknown[0], "unknown field; known: force")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidInput("force", "must be true or false")
    delivery = await retry_delivery(gw, delivery_id, force=force)
    return JSONResponse(delivery_json(delivery), status_code=202)


async def retry_delivery(gw: Gateway, delivery_id: str, *, force: bool = False) -> Delivery:
    """Queue one delivery again, due now; 409 for a succeeded one unless `force` (shared
    with the console)."""
    delivery = await gw.store.get_delivery(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    if delivery.status == "succeeded" and not force:
        raise ApiError(
            409,
            "already_succeeded",
            f'delivery {delivery_id} already succeeded; send {{"force": true}} to send it again',
        )
    if not await gw.store.requeue([delivery_id], time.time()):
        raise NotFound(f"no delivery with id {delivery_id}")
    gw.dispatcher.wake()
    delivery = await gw.store.get_delivery(delivery_id)
    if delivery is None:  # deleted (retention) between the requeue and this read
        raise NotFound(f"no delivery with id {delivery_id}")
    return delivery


async def recover_since(gw: Gateway, since: float, target_id: str | None) -> tuple[int, list[str]]:
    """Re-queue every failed delivery created since `since`; (count, ids)."""
    ids = await gw.store.failed_since(since, target_id)
    count = await gw.store.requeue(ids, time.time()) if ids else 0
    gw.dispatcher.wake()
    return count, ids


@operation(
    Operation(
        "Cancel a scheduled or pending delivery",
        "deliveries",
        200,
        DeliveryRecord,
        errors={409: "not_cancellable: the delivery has already finished"},
    )
)
async def cancel(request: Request) -> Response:
    """Call off a scheduled or pending delivery (`cancelled`); one that has finished
    cannot be (409). An attempt already in flight may still reach the receiver, but its
    outcome is not recorded: the row is no longer pending."""
    gw = gateway_of(request)
    delivery_id = request.path_params["delivery_id"]
    await read_object(request, optional=True)
    delivery = await gw.store.get_delivery(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    if not await gw.store.cancel([delivery_id]):
        delivery = await gw.store.get_delivery(delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery with id {delivery_id}")
        raise ApiError(
            409,
            "not_cancellable",
            f"delivery {delivery_id} is {delivery.status}; only a scheduled or pending"
            " delivery can be cancelled",
        )
    if delivery.ordering_key is not None:
        gw.wake_delivery()  # the next delivery of its key may go now
    delivery = await gw.store.get_delivery(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    return JSONResponse(delivery_json(delivery))


@operation(
    Operation(
        "Re-queue failed deliveries since a time",
        "deliveries",
        202,
        Recovered,
        body=Recover,
        errors={422: "validation_error: since missing or invalid, or an unknown field"},
    )
)
async def recover(request: Request) -> Response:
    """Re-queue every failed delivery created since a time (optionally for one target)."""
    gw = gateway_of(request)
    body = await read_object(request)
    unknown = sorted(set(body) - {"since", "target_id"})
    if unknown:
        raise InvalidInput(unknown[0], "unknown field; known: since, target_id")
    since = required_time(body.get("since"), "since")
    target_id = body.get("target_id")
    if target_id is not None and not isinstance(target_id, str):
        raise InvalidInput("target_id", "must be a string")
    count, ids = await recover_since(gw, since, target_id)
    return JSONResponse({"requeued": count, "delivery_ids": ids}, status_code=202)


routes = [
    Route("/deliveries", list_deliveries, methods=["GET"]),
    Route("/deliveries/recover", recover, methods=["POST"]),
    Route("/deliveries/{delivery_id}", read, methods=["GET"]),
    Route("/deliveries/{delivery_id}/retry", retry, methods=["POST"]),
    Route("/deliveries/{delivery_id}/cancel", cancel, methods=["POST"]),
]
