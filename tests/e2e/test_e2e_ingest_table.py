"""docs/design.md §3 end to end: every row of the public endpoint's table, status and exact body,
against the real app under uvicorn, and the order in which the checks refuse a request."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}
EVENT_ID = re.compile(r"evt_[0-9A-Za-z_-]+")
FORM_DETAIL = (
    "send the event as a JSON body (application/json); "
    "form-encoded and multipart bodies are not accepted"
)


def events_of(gw: harness.Gateway, app_id: str) -> list[dict[str, Any]]:
    response = gw.admin.get("/v1/events", params={"app_id": app_id, "limit": 500})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def post_raw(
    gw: harness.Gateway, token: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return gw.public.post(f"/api/event/{token}", content=body, headers=headers or JSON)


@pytest.fixture
def small(tmp_path: Path) -> Any:
    """A gateway with a 1 KiB body cap and nesting capped at 5 levels."""
    settings = harness.make_settings(tmp_path, ingest={"max_body_bytes": 1024, "max_depth": 5})
    with harness.running_gateway(settings) as running:
        yield running


# accepted
def test_accepted_event_gets_202_with_event_id_and_is_stored_as_sent(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("acme")
    body = b'{"event_type":"job_completed","phone":"555","extra":{"kept":[1,2]}}'
    response = post_raw(gateway, token, body)
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"accepted", "event_id"}
    assert answer["accepted"] is True
    assert EVENT_ID.fullmatch(answer["event_id"])
    stored = gateway.admin.get(f"/v1/events/{answer['event_id']}").json()
    assert stored["app_id"] == app_id
    assert stored["event_type"] == "job_completed"
    assert stored["payload"] == orjson.loads(body)  # unknown fields kept


def test_body_is_parsed_as_json_whatever_the_content_type_says(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme")
    for content_type in ("text/plain", "application/octet-stream", None):
        headers = {"content-type": content_type} if content_type else {}
        response = gateway.public.post(
            f"/api/event/{token}", content=b'{"type":"x"}', headers=headers
        )
        assert response.status_code == 202, (content_type, response.text)
    assert len(events_of(gateway, app_id)) == 3


# duplicates
@pytest.mark.parametrize("header", ["Idempotency-Key", "webhook-id"])
def test_repeated_idempotency_key_answers_200_with_the_original_event_id(
    gateway: harness.Gateway, header: str
) -> None:
    app_id, token = gateway.create_app("acme")
    first = gateway.post_event(token, {"n": 1}, headers={header: "key-1"})
    assert first.status_code == 202
    original = first.json()["event_id"]
    again = gateway.post_event(token, {"n": 2}, headers={header: "key-1"})
    assert again.status_code == 200
    assert again.json() == {"accepted": True, "event_id": original, "duplicate": True}
    other = gateway.post_event(token, {"n": 3}, headers={header: "key-2"})
    assert other.status_code == 202
    stored = events_of(gateway, app_id)
    assert sorted(e["id"] for e in stored) == sorted([original, other.json()["event_id"]])
    assert next(e for e in stored if e["id"] == original)["payload"] == {"n": 1}


def test_long_idempotency_keys_differing_only_at_the_end_are_different_keys(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("acme")
    stem = "k" * 300
    first = gateway.post_event(token, {"n": 1}, headers={"Idempotency-Key": stem + "1"})
    second = gateway.post_event(token, {"n": 2}, headers={"Idempotency-Key": stem + "2"})
    assert (first.status_code, second.status_code) == (202, 202)
    again = gateway.post_event(token, {"n": 3}, headers={"Idempotency-Key": stem + "2"})
    assert again.status_code == 200
    assert again.json()["event_id"] == second.json()["event_id"]
    assert len(events_of(gateway, app_id)) == 2


def test_idempotency_keys_are_per_app(gateway: harness.Gateway) -> None:
    _, token_a = gateway.create_app("a")
    _, token_b = gateway.create_app("b")
    first = gateway.post_event(token_a, {}, headers={"Idempotency-Key": "same"})
    second = gateway.post_event(token_b, {}, headers={"Idempotency-Key": "same"})
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["event_id"] != second.json()["event_id"]


def test_concurrent_requests_with_one_key_store_one_event(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme", rate=1000, burst=1000)
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=gateway.base_url, trust_env=False, timeout=30) as client:
            client.get("/healthz")  # connect before the barrier
            barrier.wait()
            response = client.post(
                f"/api/event/{token}", content=b"{}", headers={**JSON, "Idempotency-Key": "k"}
            )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 7 + [202]
    assert len({r.json()["event_id"] for r in answers}) == 1
    assert len(events_of(gateway, app_id)) == 1


# unknown, revoked, disabled
def test_unknown_revoked_and_disabled_tokens_get_404(gateway: harness.Gateway) -> None:
    deleted_id, deleted = gateway.create_app("deleted")
    disabled_id, disabled = gateway.create_app("disabled")
    live_id, live = gateway.create_app("live")
    assert gateway.admin.delete(f"/v1/apps/{deleted_id}").status_code == 204
    patched = gateway.admin.patch(f"/v1/apps/{disabled_id}", json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    for token in ("no-such-token", deleted, disabled):
        response = gateway.post_event(token, {"n": 1})
        assert response.status_code == 404
        assert response.content == b'{"error":"not_found"}'
    assert gateway.post_event(live, {"n": 1}).status_code == 202
    assert events_of(gateway, disabled_id) == []
    # enabling again restores the same token
    assert gateway.admin.patch(f"/v1/apps/{disabled_id}", json={"enabled": True}).is_success
    assert gateway.post_event(disabled, {"n": 2}).status_code == 202
    assert len(events_of(gateway, live_id)) == 1


# 429
def test_rate_limited_request_gets_exact_429_with_retry_after_and_ratelimit_headers(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("slow", rate=0.5, burst=2)
    first = gateway.post_event(token, {"n": 1})
    assert first.status_code == 202
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert int(first.headers["ratelimit-reset"]) >= 1
    assert gateway.post_event(token, {"n": 2}).status_code == 202
    refused = gateway.post_event(token, {"n": 3})
    assert refused.status_code == 429
    assert refused.content == b'{"rateLimited":true}'
    assert refused.json() == {"rateLimited": True}
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 2  # one token per 2 s
    assert refused.headers["ratelimit-limit"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"].isdigit()
    assert int(refused.headers["ratelimit-reset"]) >= 1
    assert len(events_of(gateway, app_id)) == 2


def test_app_without_own_limits_uses_the_configured_default(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, limits={"app_rate": 0.1, "app_burst": 3})
    with harness.running_gateway(settings) as gw:
        _, token = gw.create_app("default-limits")
        statuses = [gw.post_event(token, {"n": i}).status_code for i in range(5)]
    assert statuses == [202, 202, 202, 429, 429]


# 415
FORM_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "Application/X-WWW-Form-Urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/mixed; boundary=xyz",
    "MULTIPART/related",
]


def test_form_and_multipart_bodies_get_415(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme", rate=1000, burst=1000)
    for content_type in FORM_TYPES:
        response = post_raw(
            gateway, token, b'{"looks":"like json"}', {"content-type": content_type}
        )
        assert response.status_code == 415, content_type
        assert response.json() == {"error": "unsupported_media_type", "detail": FORM_DETAIL}
    assert events_of(gateway, app_id) == []


def test_real_multipart_upload_gets_415(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("acme")
    response = gateway.public.post(f"/api/event/{token}", files={"file": b'{"a":1}'})
    assert response.status_code == 415
    assert response.json() == {"error": "unsupported_media_type", "detail": FORM_DETAIL}
    form = gateway.public.post(f"/api/event/{token}", data={"a": "1"})
    assert form.status_code == 415
    assert form.json()["error"] == "unsupported_media_type"


# 413
def test_body_at_the_cap_is_accepted_and_one_byte_over_gets_413(small: harness.Gateway) -> None:
    app_id, token = small.create_app("acme")
    head = b'{"pad":"'
    at_cap = head + b"x" * (1024 - len(head) - 2) + b'"}'
    assert len(at_cap) == 1024
    assert post_raw(small, token, at_cap).status_code == 202
    over = head + b"x" * (1025 - len(head) - 2) + b'"}'
    response = post_raw(small, token, over)
    assert response.status_code == 413
    assert response.content == b'{"error":"payload_too_large","limit":1024}'
    assert len(events_of(small, app_id)) == 1


def test_chunked_body_over_the_cap_gets_413(small: harness.Gateway) -> None:
    app_id, token = small.create_app("acme")

    def chunks(total: int) -> Any:
        sent = 0
        yield b'{"pad":"'
        sent += 8
        while sent < total - 2:
            piece = b"x" * min(100, total - 2 - sent)
            sent += len(piece)
            yield piece
        yield b'"}'

    fits = small.public.post(f"/api/event/{token}", content=chunks(1024), headers=JSON)
    assert fits.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in fits.request.headers
    assert fits.status_code == 202
    response = small.public.post(f"/api/event/{token}", content=chunks(50_000), headers=JSON)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large", "limit": 1024}
    assert len(events_of(small, app_id)) == 1


def test_default_cap_is_one_mebibyte(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("acme")
    response = post_raw(gateway, token, b'{"a":"' + b"x" * (1 << 20) + b'"}')
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large", "limit": 1048576}


# 400
NOT_JSON = {
    "text": b"not json",
    "empty": b"",
    "truncated": b'{"a":1',
    "trailing": b'{"a":1}}',
    "single-quotes": b"{'a': 1}",
    "bad-utf8": b'{"a":"\xff\xfe"}',
    "bad-utf8-key": b'{"\xc3\x28":1}',
    "lone-surrogate": b'{"a":"\xed\xa0\x80"}',
    "bom-then-junk": b"\xef\xbb\xbf\xff",
    "nan": b'{"a":NaN}',
    "comment": b'{"a":1 /* no */}',
}


def test_body_that_is_not_json_gets_400_invalid_json(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme", rate=1000, burst=1000)
    for name, body in NOT_JSON.items():
        response = post_raw(gateway, token, body)
        assert response.status_code == 400, name
        answer = response.json()
        assert set(answer) == {"error", "detail"}, name
        assert answer["error"] == "invalid_json", name
        assert isinstance(answer["detail"], str) and answer["detail"], name
    assert events_of(gateway, app_id) == []


def test_nesting_deeper_than_max_depth_gets_400_invalid_json(small: harness.Gateway) -> None:
    app_id, token = small.create_app("acme")
    five = b'{"a":[{"b":{"c":[1]}}]}'  # object, list, object, object, list: 5 levels
    assert post_raw(small, token, five).status_code == 202
    six = b'{"a":[{"b":{"c":[[1]]}}]}'
    response = post_raw(small, token, six)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_json",
        "detail": "JSON nesting deeper than 5 levels",
    }
    # many brackets side by side are not depth
    wide = b'{"a":[' + b",".join([b"[1]"] * 50) + b"]}"
    assert post_raw(small, token, wide).status_code == 202
    assert len(events_of(small, app_id)) == 2


def test_hostile_nesting_gets_400_not_500(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("acme")
    for body in (b"[" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        response = post_raw(gateway, token, body)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_json"


def test_json_that_is_not_an_object_gets_400_invalid_event(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme")
    for body in (b"[]", b"[1,2]", b'[{"event_type":"x"}]', b'"text"', b"1", b"null", b"true"):
        response = post_raw(gateway, token, body)
        assert response.status_code == 400, body
        assert response.content == (
            b'{"error":"invalid_event","detail":"top level must be an object"}'
        )
    assert events_of(gateway, app_id) == []


# 422
SCHEMA = {
    "type": "object",
    "required": ["customer"],
    "properties": {
        "customer": {
            "type": "object",
            "required": ["phone"],
            "properties": {"phone": {"type": "string", "pattern": "^[0-9]+$"}},
        },
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer"}}},
        },
        "a.b": {"type": "integer"},
        "x/y~z": {"type": "integer"},
    },
}


SCHEMA_CASES: list[tuple[dict[str, Any], str]] = [
    ({}, ""),  # the whole event: RFC 6901's empty pointer
    ({"customer": {}}, "/customer"),
    ({"customer": {"phone": 5}}, "/customer/phone"),
    ({"customer": {"phone": "12a"}}, "/customer/phone"),
    ({"customer": {"phone": "1"}, "items": [{"qty": 1}, {"qty": "2"}]}, "/items/1/qty"),
    ({"customer": {"phone": "1"}, "a.b": "no"}, "/a.b"),
    ({"customer": {"phone": "1"}, "x/y~z": "no"}, "/x~1y~0z"),
    ({"customer": []}, "/customer"),
]


def test_schema_violation_gets_422_with_detail_and_json_pointer(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("strict", schema=SCHEMA, rate=1000, burst=1000)
    for payload, path in SCHEMA_CASES:
        response = gateway.post_event(token, payload)
        assert response.status_code == 422, (payload, response.text)
        answer = response.json()
        assert set(answer) == {"error", "detail", "path"}
        assert answer["error"] == "schema_violation"
        assert isinstance(answer["detail"], str) and answer["detail"]
        assert answer["path"] == path, payload
    assert events_of(gateway, app_id) == []
    valid = {"customer": {"phone": "123"}, "items": [{"qty": 1}], "unknown": True}
    assert gateway.post_event(token, valid).status_code == 202


def test_schema_set_later_through_patch_applies_at_once(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme")
    assert gateway.post_event(token, {}).status_code == 202
    patched = gateway.admin.patch(f"/v1/apps/{app_id}", json={"schema": SCHEMA})
    assert patched.status_code == 200
    assert gateway.post_event(token, {}).status_code == 422
    assert gateway.admin.patch(f"/v1/apps/{app_id}", json={"schema": None}).status_code == 200
    assert gateway.post_event(token, {}).status_code == 202


# 405
def test_methods_other_than_post_get_405(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme")
    for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for target in (token, "unknown-token"):
            response = gateway.public.request(
                method, f"/api/event/{target}", content=b"{}", headers=JSON
            )
            assert response.status_code == 405, method
            assert response.content == b'{"error":"method_not_allowed"}'
            assert response.headers["allow"] == "POST"
    assert events_of(gateway, app_id) == []


# the order of checks
def test_rate_limit_is_checked_before_content_type(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("acme", rate=0.01, burst=1)
    assert gateway.post_event(token, {}).status_code == 202
    form = {"content-type": "application/x-www-form-urlencoded"}
    response = post_raw(gateway, token, b"a=b", form)
    assert response.status_code == 429
    assert response.content == b'{"rateLimited":true}'


def test_unknown_token_with_huge_body_gets_404_not_413(small: harness.Gateway) -> None:
    big = b'{"a":"' + b"x" * 200_000 + b'"}'
    response = post_raw(small, "unknown-token", big)
    assert response.status_code == 404
    assert response.content == b'{"error":"not_found"}'


def test_disabled_app_gets_404_even_when_rate_limited(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme", rate=0.01, burst=1)
    assert gateway.post_event(token, {}).status_code == 202
    assert gateway.post_event(token, {}).status_code == 429
    assert gateway.admin.patch(f"/v1/apps/{app_id}", json={"enabled": False}).is_success
    assert gateway.post_event(token, {}).status_code == 404


def test_content_type_is_checked_before_size_and_size_before_json(
    small: harness.Gateway,
) -> None:
    _, token = small.create_app("acme", rate=1000, burst=1000)
    big_garbage = b"x" * 5000
    form = {"content-type": "multipart/form-data; boundary=b"}
    assert post_raw(small, token, big_garbage, form).status_code == 415
    response = post_raw(small, token, big_garbage)
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large", "limit": 1024}


def test_json_shape_is_checked_before_schema_and_schema_before_duplicates(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("strict", schema=SCHEMA)
    not_object = post_raw(gateway, token, b"[1]")
    assert not_object.status_code == 400
    assert not_object.json()["error"] == "invalid_event"
    valid = {"customer": {"phone": "1"}}
    first = gateway.post_event(token, valid, headers={"Idempotency-Key": "k"})
    assert first.status_code == 202
    # the key was seen, but the body fails the schema: the schema answers first
    again = gateway.post_event(token, {}, headers={"Idempotency-Key": "k"})
    assert again.status_code == 422
    assert len(events_of(gateway, app_id)) == 1
