"""JSON in and out for the admin API, and the one place errors become HTTP answers.

Every error is `{"error": "<snake_case code>", "detail": "<sentence>", ...}` (docs/design.md §9);
no handler ever lets a traceback reach the client.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import InvalidInput, NotFound, StoreError
from gateway.ids import is_id

log = logging.getLogger("hookgate.api")

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, **fields: Any) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.fields = fields
        super().__init__(detail)

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.code, "detail": self.detail, **self.fields}, status_code=self.status
        )


def error_response(status: int, code: str, detail: str, **fields: Any) -> JSONResponse:
    return ApiError(status, code, detail, **fields).response()


async def read_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong."""
    body = await request.body()
    if not body.strip():
        if optional:
            return {}
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return value


def parse_time(value: str | None, field: str) -> float | None:
    """RFC 3339 (`2026-11-23T10:00:00Z`) or epoch seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidInput(field, "expected an RFC 3339 time or epoch seconds") from None


def required_time(value: Any, field: str) -> float:
    """A time the request must carry (RFC 3339 or epoch seconds): 422 naming `field`."""
    if value is None or value == "" or isinstance(value, bool):
        raise InvalidInput(field, "is required (RFC 3339 time or epoch seconds)")
    if not isinstance(value, str | int | float):
        raise InvalidInput(field, "expected an RFC 3339 time or epoch seconds")
    since = parse_time(str(value), field)
    if since is None:  # unreachable: parse_time returns None only for ""
        raise InvalidInput(field, "is required (RFC 3339 time or epoch seconds)")
    return since


def query_params(request: Request, *known: str) -> QueryParams:
    """The query string, refused with 400 `invalid_parameter` if it names a parameter the
    endpoint does not know: a misspelt filter must not silently list everything."""
    q = request.query_params
    for name in q:
        if name not in known:
            listed = ", ".join(known) if known else "none"
            raise ApiError(
                400,
                "invalid_parameter",
                f"unknown query parameter {name!r}; known: {listed}",
                parameter=name,
            )
    return q


def parse_cursor(q: QueryParams, prefix: str | None) -> str | None:
    """`cursor=`: a `next_cursor` this list handed out (the last id of a page), else 400
    `invalid_cursor`. `prefix` None: the list is not paged, so no cursor is valid."""
    raw = q.get("cursor")
    if raw is None or raw == "":
        return None
    if prefix is None or not is_id(raw, prefix):
        raise ApiError(
            400,
            "invalid_cursor",
            "cursor is not a next_cursor this list handed out"
            if prefix
            else "this list is not paged (next_cursor is always null); send no cursor",
        )
    return raw


def parse_limit(request: Request, default: int = 50, maximum: int = 500) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidInput("limit", "expected an integer") from None
    if not 1 <= limit <= maximum:
        raise InvalidInput("limit", f"must be between 1 and {maximum}")
    return limit


class BearerAuth:
    """ASGI middleware of the `/v1` mount: `Authorization: Bearer <admin token>` (compared
    in constant time) or a 401, before any endpoint runs. A path or method no route of the
    mount serves goes on to the router's 404/405 unauthenticated, as it always has."""

    def __init__(self, app: ASGIApp, token: bytes, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.token = token
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._served(scope) and not self._authorized(scope):
            await _unauthorized()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _served(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)

    def _authorized(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, supplied = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(supplied.strip(), self.token)


def _unauthorized() -> JSONResponse:
    response = error_response(401, "unauthorized", "send Authorization: Bearer <admin token>")
    response.headers["www-authenticate"] = "Bearer"
    return response


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    fields = {"field": exc.field} if exc.field else {}
    return error_response(422, "validation_error", exc.message, **fields)


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "not_found", str(exc) or "no such record")


async def store_error(request: Request, exc: Exception) -> Response:
    log.error("store error: %s", exc)
    return error_response(503, "store_unavailable", "the store did not answer; try again")


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        detail = "no such route"
    response = error_response(exc.status_code, code, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's 405 names the methods of
    the first route whose path matched, while we declare one route per method."""
    scope = request.scope  # the mount it went through already moved `root_path`: undo that
    top = {**scope, "method": "GET", "root_path": scope.get("app_root_path", scope["root_path"])}
    return sorted(_methods(request.app.router.routes, top))


def _methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    methods: set[str] = set()
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            methods |= _methods(route.routes, {**scope, **child})
        else:
            methods.update(getattr(route, "methods", None) or ())
    return methods


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """The error tree as JSON answers, for every route (the one place errors become HTTP)."""
    return {
        ApiError: api_error,
        InvalidInput: invalid_input,
        NotFound: not_found,
        StoreError: store_error,
        HTTPException: http_exception,
        Exception: server_error,
    }


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "unexpected error; see the gateway log")
