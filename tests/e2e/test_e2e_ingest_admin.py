"""The admin API of issue 2 end to end (docs/design.md §5, §9): bearer auth on every `/v1` route,
apps CRUD and rotation, validation errors, the events API with filters and cursor
pagination, the open operational routes, and an OpenAPI document covering every route."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import harness
import httpx
import pytest
from starlette.routing import Mount, Route

pytestmark = pytest.mark.e2e

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
APP_FIELDS = {"id", "name", "enabled", "rate", "burst", "event_url", "created_at"}


def served_operations(gw: harness.Gateway) -> set[tuple[str, str]]:
    """(method, path template) of every route the Starlette app serves, HEAD aside; the
    console is a session-guarded HTML surface of its own, outside the API document."""
    ops = set()
    for route in gw.app.starlette.routes:
        if isinstance(route, Mount) and route.path == "/console":
            continue
        inner = route.routes if isinstance(route, Mount) else [route]
        prefix = route.path if isinstance(route, Mount) else ""
        for r in inner:
            assert isinstance(r, Route)
            ops |= {(m, prefix + r.path) for m in r.methods or () if m != "HEAD"}
    return ops


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_1", path)


# auth
def test_every_v1_route_needs_the_bearer_token(gateway: harness.Gateway) -> None:
    v1 = sorted(op for op in served_operations(gateway) if op[1].startswith("/v1"))
    assert len(v1) >= 20
    bad_headers: list[dict[str, Any]] = [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Bearer {harness.ADMIN_TOKEN}x"},
        {"authorization": f"Bearer {harness.ADMIN_TOKEN[:-1]}"},
        {"authorization": f"Basic {harness.ADMIN_TOKEN}"},
        {"authorization": harness.ADMIN_TOKEN},
        {"authorization": "Bearer"},
        {"authorization": "Bearer ünïcode".encode()},
    ]
    for method, path in v1:
        for headers in bad_headers:
            response = gateway.public.request(
                method, concrete(path), headers=headers, json={"name": "sneaky"}
            )
            assert response.status_code == 401, (method, path, headers)
            body = response.json()
            assert body["error"] == "unauthorized"
            assert isinstance(body["detail"], str)
            assert response.headers["www-authenticate"] == "Bearer"
    # nothing was created by the refused requests
    assert gateway.admin.get("/v1/apps").json()["data"] == []


def test_bearer_scheme_is_case_insensitive(gateway: harness.Gateway) -> None:
    response = gateway.public.get(
        "/v1/apps", headers={"authorization": f"bearer {harness.ADMIN_TOKEN}"}
    )
    assert response.status_code == 200


def test_operational_routes_need_no_token(gateway: harness.Gateway) -> None:
    assert gateway.public.get("/healthz").json() == {"status": "ok"}
    ready = gateway.public.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = gateway.public.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE hookgate_rules_loaded gauge" in metrics.text
    assert gateway.public.get("/openapi.json").json()["openapi"].startswith("3.")


# OpenAPI
def test_openapi_documents_every_served_route_and_nothing_else(gateway: harness.Gateway) -> None:
    doc = gateway.public.get("/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = served_operations(gateway) | {("POST", "/api/event/{token}")}
    assert documented == served
    for path, operations in doc["paths"].items():
        params = set(re.findall(r"\{([^}]+)\}", path))
        for op in operations.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, path
            assert op["responses"], path
            if path.startswith("/v1"):
                assert op["security"] == [{"bearer": []}], path
                assert "401" in op["responses"], path
    ingest = doc["paths"]["/api/event/{token}"]["post"]
    assert {"202", "200", "400", "401", "404", "405", "413", "415", "422", "429"} <= set(
        ingest["responses"]
    )
    assert "security" not in ingest


# apps
def test_app_lifecycle_through_the_api(gateway: harness.Gateway) -> None:
    created = gateway.admin.post("/v1/apps", json={"name": "acme-crm", "rate": 5, "burst": 7})
    assert created.status_code == 201
    app = created.json()
    token = app["token"]
    harness.track_secret(token)
    assert APP_FIELDS | {"token"} <= set(app)
    assert app["id"].startswith("app_")
    assert (app["name"], app["enabled"], app["rate"], app["burst"]) == ("acme-crm", True, 5, 7)
    assert app["event_url"] == f"http://127.0.0.1:9/api/event/{token}"
    assert RFC3339_MS.fullmatch(app["created_at"])
    assert len(token) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", token)  # >= 128 bits
    app_id = app["id"]

    listed = gateway.admin.get("/v1/apps").json()
    assert listed["next_cursor"] is None
    assert [a["id"] for a in listed["data"]] == [app_id]
    read = gateway.admin.get(f"/v1/apps/{app_id}")
    assert read.status_code == 200
    for record in (listed["data"][0], read.json()):
        assert "token" not in record
        assert token not in str(record)
        assert record["event_url"] is None
        assert set(record) >= APP_FIELDS

    assert gateway.post_event(token, {"n": 1}).status_code == 202
    patched = gateway.admin.patch(
        f"/v1/apps/{app_id}", json={"name": "acme", "rate": 0.01, "burst": 1}
    )
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["rate"], patched.json()["burst"]) == (
        "acme",
        0.01,
        1,
    )
    assert gateway.admin.get(f"/v1/apps/{app_id}").json()["name"] == "acme"
    # the new limits apply to the next request
    assert gateway.post_event(token, {"n": 2}).status_code in (202, 429)
    assert gateway.post_event(token, {"n": 3}).status_code == 429
    assert gateway.admin.patch(f"/v1/apps/{app_id}", json={"rate": 1000, "burst": 1000}).is_success

    rotated = gateway.admin.post(f"/v1/apps/{app_id}/rotate")
    assert rotated.status_code == 200
    new_token = rotated.json()["token"]
    harness.track_secret(new_token)
    assert new_token != token
    assert rotated.json()["event_url"].endswith("/api/event/" + new_token)
    assert gateway.post_event(token, {}).status_code == 404
    assert gateway.post_event(new_token, {}).status_code == 202

    deleted = gateway.admin.delete(f"/v1/apps/{app_id}")
    assert deleted.status_code == 204
    missing = gateway.admin.get(f"/v1/apps/{app_id}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert gateway.post_event(new_token, {}).status_code == 404
    assert gateway.admin.delete(f"/v1/apps/{app_id}").status_code == 404
    assert gateway.admin.get("/v1/apps").json()["data"] == []


def test_rotate_with_grace_keeps_the_old_token_until_it_expires(gateway: harness.Gateway) -> None:
    app_id, old = gateway.create_app("acme", rate=1000, burst=1000)
    rotated = gateway.admin.post(f"/v1/apps/{app_id}/rotate", json={"grace_seconds": 2})
    expires_at = time.time() + 2
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    harness.track_secret(new)
    assert "previous_token_expires_at" in rotated.json()
    assert gateway.post_event(new, {"via": "new"}).status_code == 202
    if time.time() < expires_at - 0.5:  # still well inside the grace period
        assert gateway.post_event(old, {"via": "old"}).status_code == 202
        # both tokens land on the same app
        events = gateway.admin.get("/v1/events", params={"app_id": app_id}).json()["data"]
        assert sorted(e["payload"]["via"] for e in events) == ["new", "old"]
    harness.wait_until(lambda: gateway.post_event(old, {}).status_code == 404, timeout=10)
    assert time.time() >= expires_at - 0.1
    assert gateway.post_event(new, {}).status_code == 202
    assert "previous_token_expires_at" not in gateway.admin.get(f"/v1/apps/{app_id}").json()


CREATE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": 5}, "name"),
    ({"name": "ok", "rate": 0}, "rate"),
    ({"name": "ok", "rate": -1}, "rate"),
    ({"name": "ok", "rate": "10"}, "rate"),
    ({"name": "ok", "rate": True}, "rate"),
    ({"name": "ok", "burst": 0}, "burst"),
    ({"name": "ok", "burst": 2.5}, "burst"),
    ({"name": "ok", "schema": "object"}, "schema"),
    ({"name": "ok", "schema": {"type": 5}}, "schema"),
    ({"name": "ok", "signing_secret": "whsec_!!!"}, "signing_secret"),
    ({"name": "ok", "signing_secret": 12}, "signing_secret"),
    ({"name": "ok", "enabled": "yes"}, "enabled"),
    ({"name": "ok", "token": "mine"}, "token"),
]


def test_create_validation_errors_get_422_with_the_field(gateway: harness.Gateway) -> None:
    for body, field in CREATE_ERRORS:
        response = gateway.admin.post("/v1/apps", json=body)
        assert response.status_code == 422, (body, response.text)
        answer = response.json()
        assert answer["error"] == "validation_error"
        assert answer["field"] == field, body
        assert isinstance(answer["detail"], str) and answer["detail"]
    assert gateway.admin.get("/v1/apps").json()["data"] == []


def test_duplicate_app_name_gets_422_on_create_and_rename(gateway: harness.Gateway) -> None:
    acme_id, acme = gateway.create_app("acme")
    other_id, other = gateway.create_app("other")
    response = gateway.admin.post("/v1/apps", json={"name": "acme"})
    assert response.status_code == 422
    assert response.json()["field"] == "name"
    renamed = gateway.admin.patch(f"/v1/apps/{other_id}", json={"name": "acme"})
    assert renamed.status_code == 422
    assert renamed.json()["field"] == "name"
    # both apps and both tokens are intact
    names = {a["id"]: a["name"] for a in gateway.admin.get("/v1/apps").json()["data"]}
    assert names == {acme_id: "acme", other_id: "other"}
    assert gateway.post_event(acme, {}).status_code == 202
    assert gateway.post_event(other, {}).status_code == 202
    # renaming an app to its own name is no conflict
    assert gateway.admin.patch(f"/v1/apps/{acme_id}", json={"name": "acme"}).status_code == 200


PATCH_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"name": None}, "name"),
    ({"name": "bad name"}, "name"),
    ({"enabled": "false"}, "enabled"),
    ({"enabled": None}, "enabled"),
    ({"rate": 0}, "rate"),
    ({"rate": 2_000_000}, "rate"),
    ({"burst": -3}, "burst"),
    ({"schema": {"type": "no-such-type"}}, "schema"),
    ({"signing_secret": "whsec_%%"}, "signing_secret"),
    ({"token_hash": "0" * 64}, "token_hash"),
    ({"id": "app_other"}, "id"),
    ({"name": "renamed", "rate": -1}, "rate"),  # one bad field: nothing applies
]


def test_patch_validation_errors_get_422_with_the_field_and_change_nothing(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("acme", rate=3, burst=4)
    before = gateway.admin.get(f"/v1/apps/{app_id}").json()
    for body, field in PATCH_ERRORS:
        response = gateway.admin.patch(f"/v1/apps/{app_id}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "validation_error"
        assert response.json()["field"] == field, body
        assert gateway.admin.get(f"/v1/apps/{app_id}").json() == before
    assert gateway.post_event(token, {}).status_code == 202


def test_bad_request_bodies_and_unknown_ids(gateway: harness.Gateway) -> None:
    app_id, _ = gateway.create_app("acme")
    not_json = gateway.admin.post(
        "/v1/apps", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "invalid_json"
    array = gateway.admin.patch(f"/v1/apps/{app_id}", json=[1])
    assert array.status_code == 400
    assert array.json()["error"] == "invalid_json"
    for method, path in (
        ("GET", "/v1/apps/app_nope"),
        ("PATCH", "/v1/apps/app_nope"),
        ("DELETE", "/v1/apps/app_nope"),
        ("POST", "/v1/apps/app_nope/rotate"),
        ("GET", "/v1/events/evt_nope"),
    ):
        response = gateway.admin.request(method, path, json={"name": "x"})
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"
    for grace in (-1, "10", True, 10**9):
        bad = gateway.admin.post(f"/v1/apps/{app_id}/rotate", json={"grace_seconds": grace})
        assert bad.status_code == 422, grace
        assert bad.json()["field"] == "grace_seconds"
    unrouted = gateway.admin.get("/v1/nothing-here")
    assert unrouted.status_code == 404
    assert unrouted.json()["error"] == "not_found"
    wrong_method = gateway.admin.put("/v1/apps")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


# events
def test_events_filters_and_cursor_pagination(gateway: harness.Gateway) -> None:
    a_id, a = gateway.create_app("a", rate=1000, burst=1000)
    b_id, b = gateway.create_app("b", rate=1000, burst=1000)
    first = gateway.post_event(a, {"event_type": "early", "n": 0}).json()["event_id"]
    middle = time.time()  # after the first event was stored, before the others
    ids_a = [first]
    for i in range(1, 7):
        kind = "job_completed" if i % 2 else "job_created"
        ids_a.append(gateway.post_event(a, {"eventType": kind, "n": i}).json()["event_id"])
    ids_b = [gateway.post_event(b, {"type": "job_completed", "n": 100}).json()["event_id"]]

    everything = gateway.admin.get("/v1/events").json()
    assert [e["id"] for e in everything["data"]] == sorted(ids_a + ids_b, reverse=True)
    assert everything["next_cursor"] is None

    def listed(**params: Any) -> list[str]:
        response = gateway.admin.get("/v1/events", params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert listed(app_id=a_id) == sorted(ids_a, reverse=True)
    assert listed(app_id=b_id) == ids_b
    completed = listed(event_type="job_completed")
    assert sorted(completed) == sorted([ids_a[1], ids_a[3], ids_a[5], *ids_b])
    assert listed(app_id=a_id, event_type="job_completed") == [ids_a[5], ids_a[3], ids_a[1]]
    later = sorted(ids_a[1:] + ids_b, reverse=True)
    assert listed(since=str(middle)) == later
    assert listed(since=datetime.fromtimestamp(middle, UTC).isoformat()) == later
    zulu = datetime.fromtimestamp(middle, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert listed(since=zulu, app_id=b_id) == ids_b
    assert listed(since=str(time.time() + 60)) == []

    # cursor pagination: pages of 2 cover every event of app a exactly once, newest first
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"app_id": a_id, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = gateway.admin.get("/v1/events", params=params).json()
        pages.append([e["id"] for e in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for page in pages for i in page] == sorted(ids_a, reverse=True)


def test_events_query_validation(gateway: harness.Gateway) -> None:
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
    ):
        response = gateway.admin.get("/v1/events", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"] == "validation_error"
        assert response.json()["field"] == field


def test_event_record_holds_the_payload_as_sent(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme")
    body = b'{"event":"signup","nested":{"list":[1,2.5,null,"x"]},"unicode":"\xc3\xa9"}'
    response = gateway.public.post(
        f"/api/event/{token}",
        content=body,
        headers={
            "content-type": "application/json",
            "user-agent": "acme/1.0",
            "idempotency-key": "k-1",
        },
    )
    event_id = response.json()["event_id"]
    record = gateway.admin.get(f"/v1/events/{event_id}")
    assert record.status_code == 200
    event = record.json()
    assert event["id"] == event_id
    assert event["app_id"] == app_id
    assert event["event_type"] == "signup"
    assert RFC3339_MS.fullmatch(event["received_at"])
    assert event["payload"] == {
        "event": "signup",
        "nested": {"list": [1, 2.5, None, "x"]},
        "unicode": "é",
    }
    assert event["matched_rules"] == []
    assert event["deliveries"] == []
    assert event["headers"]["user-agent"] == "acme/1.0"
    assert event["idempotency_key"] == "k-1"
    assert token not in record.text


def test_event_type_is_the_first_present_configured_field(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("acme")
    cases = [
        ({"type": "t", "event": "e", "eventType": "camel", "event_type": "snake"}, "snake"),
        ({"type": "t", "event": "e", "eventType": "camel"}, "camel"),
        ({"type": "t", "event": "e"}, "e"),
        ({"type": "t"}, "t"),
        ({"other": "x"}, None),
        ({"event_type": 5, "type": "t"}, "t"),
    ]
    for payload, expected in cases:
        event_id = gateway.post_event(token, payload).json()["event_id"]
        assert gateway.admin.get(f"/v1/events/{event_id}").json()["event_type"] == expected


def test_admin_client_errors_are_json(gateway: harness.Gateway) -> None:
    with httpx.Client(base_url=gateway.base_url, trust_env=False) as client:
        response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "not_found"


def test_metrics_show_the_sqlite_writers_group_commits(gateway: harness.Gateway) -> None:
    def counter(name: str) -> float:
        text = gateway.public.get("/metrics").text
        assert f"# TYPE {name} counter" in text
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]

    commits, writes = (
        counter("hookgate_store_commits_total"),
        counter("hookgate_store_writes_total"),
    )
    _, token = gateway.create_app("metered")
    for n in range(3):
        assert gateway.post_event(token, {"event_type": "order.created", "n": n}).status_code == 202
    assert counter("hookgate_store_writes_total") >= writes + 4  # the app and three events
    assert counter("hookgate_store_commits_total") > commits
