"""Console pages: sign-in, events, deliveries. Each calls the same functions the admin API
calls (`gateway.http.admin.*`, the store), never the API over HTTP."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from actions import rfc3339
from gateway.errors import InvalidInput, NotFound, StoreError
from gateway.http.admin.deliveries import STATUSES, recover_since, retry_delivery
from gateway.http.admin.events import replay_event
from gateway.http.admin_io import ApiError, parse_time
from gateway.http.console.session import COOKIE, LIFETIME_SECONDS
from gateway.ids import is_id
from gateway.records.shapes import payload_of
from gateway.runtime import Gateway
from gateway.store import DeliveryFilter

PAGE = 50


def _gw(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def _form(request: Request) -> FormData:
    stashed = request.scope.get("state", {}).get("console_form")
    return stashed if stashed is not None else await request.form()


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    session = request.scope.get("state", {}).get("console_session")
    context.update(
        request=request,
        csrf=session.csrf if session else "",
        signed_in=session is not None,
        time=lambda t: rfc3339(t) if t else "",
    )
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status
    )
    return response


def _cursor(value: str | None, prefix: str) -> str | None:
    return value if value and is_id(value, prefix) else None


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return render(request, "error.html", 404, message=str(exc) or "no such record")
    if isinstance(exc, InvalidInput):
        where = f"{exc.field}: " if exc.field else ""
        return render(request, "error.html", 422, message=f"{where}{exc.message}")
    if isinstance(exc, ApiError):
        return render(request, "error.html", exc.status, message=exc.detail)
    if isinstance(exc, StoreError):
        return render(request, "error.html", 503, message="the store did not answer; try again")
    raise exc


def page(endpoint: Any) -> Any:
    """Map our errors to an HTML page with the right status, never a traceback."""

    async def wrapper(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except (NotFound, InvalidInput, ApiError, StoreError) as exc:
            return _error(request, exc)

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


# sign-in


async def sign_in_form(request: Request) -> Response:
    return render(request, "sign_in.html")


async def sign_in(request: Request) -> Response:
    """Check the admin token; wrong tokens count against the address like unknown event
    tokens (`limits.unknown_token_per_minute`), then 429."""
    guard = request.app.state.sign_in_guard
    address = request.client.host if request.client else "unknown"
    if guard.blocked(address):
        return render(request, "sign_in.html", 429, error="Too many wrong tokens: wait a minute.")
    form = await request.form()
    supplied = form.get("token")
    token = supplied.strip().encode() if isinstance(supplied, str) else b""
    if not hmac.compare_digest(token, request.app.state.admin_token_bytes):
        if await guard.miss(address):
            return render(
                request, "sign_in.html", 429, error="Too many wrong tokens: wait a minute."
            )
        return render(request, "sign_in.html", 401, error="That is not the admin token.")
    _, cookie = request.app.state.signer.new()
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=LIFETIME_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.app.state.secure_cookie,
    )
    return response


async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# events


def _event_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    return {
        "app_id": q.get("app_id") or None,
        "event_type": q.get("event_type") or None,
        "since": parse_time(q.get("since"), "since"),
    }


@page
async def events(request: Request) -> Response:
    gw = _gw(request)
    filters = _event_filters(request)
    result = await gw.store.list_events(
        **filters, cursor=_cursor(request.query_params.get("cursor"), "evt_"), limit=PAGE
    )
    apps = await gw.store.list_apps()
    names = {a.id: a.name for a in apps}
    first = result.data[0].id if result.data else ""
    return render(
        request,
        "events.html",
        events=result.data,
        next_cursor=result.next_cursor,
        apps=apps,
        names=names,
        q=request.query_params,
        newest=first,
        paged=bool(request.query_params.get("cursor")),
    )


@page
async def event_rows(request: Request) -> Response:
    """New events since `after`, for htmx polling: the rows plus a fresh poller row."""
    gw = _gw(request)
    after = request.query_params.get("after", "")
    filters = _event_filters(request)
    result = await gw.store.list_events(**filters, limit=PAGE)
    new = [e for e in result.data if e.id > after]
    names = {a.id: a.name for a in await gw.store.list_apps()}
    return render(
        request,
        "event_rows.html",
        events=new,
        names=names,
        newest=new[0].id if new else after,
        q=request.query_params,
    )


@page
async def event_page(request: Request) -> Response:
    gw = _gw(request)
    event = await gw.store.get_event(request.path_params["event_id"])
    if event is None:
        raise NotFound(f"no event with id {request.path_params['event_id']}")
    deliveries = await gw.store.deliveries_for_event(event.id)
    payload = payload_of(event)
    pretty = (
        orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
        if not isinstance(payload, str)
        else payload
    )
    return render(
        request,
        "event.html",
        event=event,
        app_name=gw.app_name(event.app_id),
        payload=pretty,
        deliveries=deliveries,
        replayed=request.query_params.get("replayed"),
    )


@page
async def replay(request: Request) -> Response:
    gw = _gw(request)
    event = await gw.store.get_event(request.path_params["event_id"])
    if event is None:
        raise NotFound(f"no event with id {request.path_params['event_id']}")
    _, deliveries = await replay_event(gw, event)
    return RedirectResponse(
        f"/console/events/{event.id}?replayed={len(deliveries)}", status_code=303
    )


# deliveries


@page
async def deliveries(request: Request) -> Response:
    gw = _gw(request)
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
    flt = DeliveryFilter(
        status=status,  # type: ignore[arg-type]
        target_id=q.get("target_id") or None,
        rule_id=q.get("rule_id") or None,
        since=parse_time(q.get("since"), "since"),
    )
    result = await gw.store.list_deliveries(
        flt, cursor=_cursor(q.get("cursor"), "dlv_"), limit=PAGE
    )
    return render(
        request,
        "deliveries.html",
        deliveries=result.data,
        next_cursor=result.next_cursor,
        statuses=STATUSES,
        targets=await gw.store.list_targets(),
        q=q,
    )


@page
async def delivery_page(request: Request) -> Response:
    delivery = await _gw(request).store.get_delivery(request.path_params["delivery_id"])
    if delivery is None:
        raise NotFound(f"no delivery with id {request.path_params['delivery_id']}")
    body = delivery.body.decode("utf-8", "replace") if delivery.body else None
    return render(request, "delivery.html", delivery=delivery, body=body)


@page
async def retry(request: Request) -> Response:
    form = await _form(request)
    delivery = await retry_delivery(
        _gw(request), request.path_params["delivery_id"], force=form.get("force") == "on"
    )
    return RedirectResponse(f"/console/deliveries/{delivery.id}", status_code=303)


@page
async def recover(request: Request) -> Response:
    """GET: how many failed deliveries a recovery would re-send; POST: re-send them."""
    gw = _gw(request)
    if request.method == "GET":
        q = request.query_params
        since_text, target_id = q.get("since", ""), q.get("target_id") or None
    else:
        form = await _form(request)
        since_text = str(form.get("since", ""))
        target_id = str(form.get("target_id") or "") or None
    since = parse_time(since_text, "since")
    if since is None:
        raise InvalidInput("since", "is required (RFC 3339 time or epoch seconds)")
    if request.method == "GET":
        ids = await gw.store.failed_since(since, target_id)
        return render(
            request, "recover.html", count=len(ids), since=since_text, target_id=target_id
        )
    count, _ = await recover_since(gw, since, target_id)
    return render(request, "recover.html", done=count, since=since_text, target_id=target_id)


routes = [
    Route("/sign-in", sign_in_form, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
    Route("/events", events, methods=["GET"]),
    Route("/events/rows", event_rows, methods=["GET"]),
    Route("/events/{event_id}", event_page, methods=["GET"]),
    Route("/events/{event_id}/replay", replay, methods=["POST"]),
    Route("/deliveries", deliveries, methods=["GET"]),
    Route("/deliveries/recover", recover, methods=["GET", "POST"]),
    Route("/deliveries/{delivery_id}", delivery_page, methods=["GET"]),
    Route("/deliveries/{delivery_id}/retry", retry, methods=["POST"]),
]
