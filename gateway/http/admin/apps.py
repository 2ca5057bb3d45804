"""`/v1/apps`: create, list, read, update, rotate and delete integration apps."""

from __future__ import annotations

from typing import TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import InvalidInput, NotFound
from gateway.http.admin import gateway_of as _gw
from gateway.http.admin_io import JSONResponse, parse_cursor, query_params, read_object
from gateway.http.openapi import Operation, Query, operation
from gateway.models import App
from gateway.records import apps as app_records


async def _app(request: Request) -> App:
    app = await _gw(request).store.get_app(request.path_params["app_id"])
    if app is None:
        raise NotFound(f"no app with id {request.path_params['app_id']}")
    return app


class AppList(TypedDict):
    data: list[app_records.AppRecord]
    next_cursor: None


class Rotate(TypedDict, total=False):
    grace_seconds: float


CURSOR = Query("cursor", "not paged: only an empty cursor is accepted")


@operation(
    Operation(
        "Create an app; returns its token once",
        "apps",
        201,
        app_records.AppRecord,
        body=app_records.AppCreate,
        errors={422: "validation_error: a field is missing, unknown or invalid"},
    )
)
async def create(request: Request) -> Response:
    gw = _gw(request)
    body = await read_object(request)
    unknown = sorted(set(body) - {*app_records.MUTABLE})
    if unknown:
        raise InvalidInput(unknown[0], "unknown field")
    app, token = await app_records.create_app(
        gw.store,
        body.get("name"),
        rate=body.get("rate"),
        burst=body.get("burst"),
        schema=body.get("schema"),
        signing_secret=body.get("signing_secret"),
        signature_scheme=body.get("signature_scheme"),
        enabled=body.get("enabled", True),
    )
    await gw.apps.refresh()
    return JSONResponse(app_records.app_json(app, gw.settings, token), status_code=201)


@operation(Operation("List apps", "apps", response=AppList, query=(CURSOR,)))
async def list_apps(request: Request) -> Response:
    parse_cursor(query_params(request, "cursor"), None)  # not paged: every record
    gw = _gw(request)
    apps = await gw.store.list_apps()
    return JSONResponse(
        {"data": [app_records.app_json(a, gw.settings) for a in apps], "next_cursor": None}
    )


@operation(Operation("Read an app", "apps", response=app_records.AppRecord))
async def read(request: Request) -> Response:
    return JSONResponse(app_records.app_json(await _app(request), _gw(request).settings))


@operation(
    Operation(
        "Rename, enable/disable, limits, schema, secret",
        "apps",
        response=app_records.AppRecord,
        body=app_records.AppFields,
        errors={422: "validation_error: a field is unknown or invalid"},
    )
)
async def update(request: Request) -> Response:
    gw = _gw(request)
    app = await app_records.update_app(gw.store, await _app(request), await read_object(request))
    await gw.apps.refresh()
    return JSONResponse(app_records.app_json(app, gw.settings))


@operation(
    Operation(
        "New token; the old one stays valid for grace_seconds",
        "apps",
        response=app_records.AppRecord,
        body=Rotate,
        body_required=False,
        errors={422: "validation_error: grace_seconds out of range"},
    )
)
async def rotate(request: Request) -> Response:
    gw = _gw(request)
    body = await read_object(request, optional=True)
    app, token = await app_records.rotate_token(
        gw.store, await _app(request), body.get("grace_seconds", 0)
    )
    await gw.apps.refresh()
    return JSONResponse(app_records.app_json(app, gw.settings, token))


@operation(Operation("Revoke an app", "apps", 204))
async def delete(request: Request) -> Response:
    gw = _gw(request)
    app = await _app(request)
    await gw.store.delete_app(app.id)
    await gw.apps.refresh()
    return Response(status_code=204)


routes = [
    Route("/apps", create, methods=["POST"]),
    Route("/apps", list_apps, methods=["GET"]),
    Route("/apps/{app_id}", read, methods=["GET"]),
    Route("/apps/{app_id}", update, methods=["PATCH"]),
    Route("/apps/{app_id}", delete, methods=["DELETE"]),
    Route("/apps/{app_id}/rotate", rotate, methods=["POST"]),
]
