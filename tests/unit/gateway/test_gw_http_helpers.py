"""The admin API's request parsing and error mapping, through a real Starlette app."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway.errors import InvalidInput, NotFound, StoreError
from gateway.http.admin_io import (
    ApiError,
    BearerAuth,
    JSONResponse,
    exception_handlers,
    parse_cursor,
    parse_limit,
    parse_time,
    query_params,
    read_object,
    required_time,
)
from gateway.ids import new_id

TOKEN = "admin-token-for-tests"


async def echo(request: Request) -> Response:
    return JSONResponse(await read_object(request, optional=request.method == "PUT"))


async def listing(request: Request) -> Response:
    q = query_params(request, "cursor", "limit")
    return JSONResponse({"cursor": parse_cursor(q, "evt_"), "limit": parse_limit(request)})


async def unpaged(request: Request) -> Response:
    return JSONResponse({"cursor": parse_cursor(query_params(request, "cursor"), None)})


async def fails(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "invalid":
        raise InvalidInput("since", "expected an RFC 3339 time")
    if kind == "missing":
        raise NotFound("no delivery dlv_x")
    if kind == "store":
        raise StoreError("disk I/O error")
    if kind == "api":
        raise ApiError(409, "already_succeeded", "it succeeded", delivery_id="dlv_x")
    raise RuntimeError("boom")


def _client() -> httpx.AsyncClient:
    """The admin routes' setting: a bearer-guarded mount, the app's exception handlers."""
    routes = [
        Route("/echo", echo, methods=["POST", "PUT"]),
        Route("/echo", echo, methods=["PATCH"]),
        Route("/list", listing),
        Route("/unpaged", unpaged),
        Route("/fail/{kind}", fails),
    ]
    auth = Middleware(BearerAuth, token=TOKEN.encode(), routes=routes)
    mount = Mount("", routes=routes, middleware=[auth])
    app = Starlette(routes=[mount], exception_handlers=exception_handlers())
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, raise_app_exceptions=False),
        base_url="http://admin.test",
        headers={"authorization": f"Bearer {TOKEN}"},
    )


async def test_a_wrong_or_missing_token_is_401_with_a_challenge() -> None:
    client = _client()
    for header in ("", "Bearer nope", f"Basic {TOKEN}", TOKEN):
        answer = await client.post("/echo", content=b"{}", headers={"authorization": header})
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "must be a JSON object"),
        (b"  ", "must be a JSON object"),
        (b"[1]", "must be a JSON object"),
        (b"{nope", "not valid JSON"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_400(body: bytes, detail: str) -> None:
    answer = await _client().post("/echo", content=body)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_json"
    assert detail in answer.json()["detail"]


async def test_an_optional_body_may_be_empty() -> None:
    assert (await _client().put("/echo", content=b"")).json() == {}
    assert (await _client().post("/echo", content=b'{"a": 1}')).json() == {"a": 1}


async def test_an_unknown_query_parameter_is_named_in_a_400() -> None:
    answer = await _client().get("/list", params={"curser": "x"})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_parameter",
        "detail": "unknown query parameter 'curser'; known: cursor, limit",
        "parameter": "curser",
    }


async def test_cursors_must_be_ids_this_list_handed_out() -> None:
    client = _client()
    cursor = new_id("evt_", 1_700_000_000.0)
    assert (await client.get("/list", params={"cursor": cursor})).json()["cursor"] == cursor
    assert (await client.get("/list", params={"cursor": ""})).json()["cursor"] is None
    bad = await client.get("/list", params={"cursor": "dlv_" + cursor[4:]})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_cursor"
    unpaged = await client.get("/unpaged", params={"cursor": cursor})
    assert unpaged.status_code == 400
    assert "not paged" in unpaged.json()["detail"]


@pytest.mark.parametrize(("raw", "status"), [("10", 200), ("0", 422), ("501", 422), ("x", 422)])
async def test_limit_is_an_integer_in_range(raw: str, status: int) -> None:
    answer = await _client().get("/list", params={"limit": raw})
    assert answer.status_code == status
    if status == 422:
        assert answer.json()["field"] == "limit"
    else:
        assert answer.json()["limit"] == 10


async def test_errors_map_to_their_statuses_and_never_leak_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _client()
    invalid = await client.get("/fail/invalid")
    assert (invalid.status_code, invalid.json()["field"]) == (422, "since")
    assert (await client.get("/fail/missing")).json() == {
        "error": "not_found",
        "detail": "no delivery dlv_x",
    }
    with caplog.at_level(logging.ERROR, logger="hookgate.api"):
        store = await client.get("/fail/store")
    assert store.status_code == 503
    assert store.json()["error"] == "store_unavailable"
    assert "disk I/O" not in store.text  # the driver's words stay in the log
    assert "disk I/O error" in caplog.text
    conflict = await client.get("/fail/api")
    assert conflict.status_code == 409
    assert conflict.json()["delivery_id"] == "dlv_x"
    crash = await client.get("/fail/boom")
    assert crash.status_code == 500
    assert crash.json()["error"] == "internal_error"
    assert "Traceback" not in crash.text and "boom" not in crash.text


async def test_a_405_lists_every_method_of_the_path() -> None:
    answer = await _client().delete("/echo")
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    assert answer.headers["allow"] == "PATCH, POST, PUT"


async def test_an_unknown_route_is_a_json_404() -> None:
    answer = await _client().get("/no/such/route")
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "detail": "no such route"}


def test_times_are_rfc3339_or_epoch_seconds() -> None:
    assert parse_time("2026-11-23T10:00:00Z", "since") == 1795428000.0
    assert parse_time("1795428000.5", "since") == 1795428000.5
    assert parse_time("", "since") is None
    assert parse_time(None, "since") is None
    with pytest.raises(InvalidInput) as raised:
        parse_time("yesterday", "since")
    assert raised.value.field == "since"


@pytest.mark.parametrize("value", [None, "", True, [], {"a": 1}])
def test_a_required_time_names_its_field(value: object) -> None:
    with pytest.raises(InvalidInput) as raised:
        required_time(value, "since")
    assert raised.value.field == "since"


def test_a_required_time_accepts_numbers_and_text() -> None:
    assert required_time(5, "since") == 5.0
    assert required_time("2026-11-23T10:00:00+00:00", "since") == 1795428000.0


async def test_a_path_or_method_no_route_serves_is_404_or_405_without_a_token() -> None:
    client = _client()
    missing = await client.get("/nope", headers={"authorization": ""})
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = await client.delete("/echo", headers={"authorization": ""})
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "PATCH, POST, PUT"
