"""Webhook target operations (`gateway.records.targets`): what create and update accept,
what they refuse (naming the field, a 422 over HTTP), and the secrets they generate."""

from __future__ import annotations

import dataclasses
from typing import Any

import harness
import pytest

from actions import Signer, Verifier, secret_problem
from gateway.config import Settings, load_settings
from gateway.errors import InvalidInput
from gateway.models import WebhookTarget
from gateway.records.targets import FIELDS, PATCHABLE, create_target, update_target
from rules import Logic

# Private addresses refused (the production default); one private network let through.
GUARDED = load_settings(
    env={}, delivery={"allow_private_targets": False, "allowed_networks": ["10.20.0.0/16"]}
)
LOGIC = Logic()
PUBLIC_URL = "https://93.184.216.34/hook"  # an IP literal: judged without DNS


async def _create(body: dict[str, Any], settings: Settings = GUARDED) -> WebhookTarget:
    return await create_target(body, settings, LOGIC)


def _existing(**fields: Any) -> WebhookTarget:
    base: dict[str, Any] = {
        "id": "wht_1",
        "url": PUBLIC_URL,
        "secret": "whsec_" + "A" * 43 + "=",
        "created_at": 100.0,
        "updated_at": 100.0,
    }
    return WebhookTarget(**{**base, **fields})


async def test_a_target_from_a_url_alone_gets_the_documented_defaults() -> None:
    target = await _create({"url": PUBLIC_URL})
    assert target.id.startswith("wht_")
    assert target.url == PUBLIC_URL
    assert target.events == ()
    assert target.filter is None
    assert target.retry == "standard"
    assert target.disable_after == 3
    assert target.description == ""
    assert target.status == "active"
    assert target.consecutive_failures == 0
    assert target.created_at == target.updated_at > 0


async def test_a_generated_secret_is_a_fresh_signing_secret_each_time() -> None:
    first = await _create({"url": PUBLIC_URL})
    second = await _create({"url": PUBLIC_URL})
    assert first.secret.startswith("whsec_")
    assert secret_problem(first.secret) is None
    assert first.secret != second.secret
    # It signs, and what it signs verifies with the same secret.
    headers = Signer(first.secret).headers("dlv_1", 1_700_000_000, b"{}")
    Verifier(first.secret).verify(headers, b"{}", now=1_700_000_000)


async def test_a_given_secret_is_kept_as_given() -> None:
    secret = "whsec_" + "B" * 43 + "="
    assert (await _create({"url": PUBLIC_URL, "secret": secret})).secret == secret


async def test_every_field_is_taken_and_normalised() -> None:
    target = await _create(
        {
            "url": PUBLIC_URL,
            "events": ["job.done", "job.new", "job.done"],
            "filter": {"==": [{"var": "status"}, "paid"]},
            "retry": [1, 2.5],
            "disable_after": None,
            "description": "CRM",
        }
    )
    assert target.events == ("job.done", "job.new")  # duplicates dropped, order kept
    assert target.filter == {"==": [{"var": "status"}, "paid"]}
    assert target.retry == (1.0, 2.5)
    assert target.disable_after is None  # null: never disabled
    assert target.description == "CRM"


@pytest.mark.parametrize(
    ("retry", "stored"), [("none", "none"), ([], "none"), ("standard", "standard")]
)
async def test_named_retry_policies_are_stored_by_name(retry: Any, stored: str) -> None:
    assert (await _create({"url": PUBLIC_URL, "retry": retry})).retry == stored


BAD_CREATE = [
    ({}, "url", "absolute http(s) URL"),
    ({"url": ""}, "url", "absolute http(s) URL"),
    ({"url": 5}, "url", "absolute http(s) URL"),
    ({"url": "ftp://93.184.216.34/"}, "url", "refused: URL scheme ftp"),
    ({"url": "https://user:pw@93.184.216.34/"}, "url", "refused: URL must not carry"),
    ({"url": "http://127.0.0.1:9/hook"}, "url", "refused: host 127.0.0.1"),
    ({"url": "http://[::1]/hook"}, "url", "refused: host"),
    ({"events": "job.done"}, "events", "list of event type names"),
    ({"events": ["ok", ""]}, "events", "list of event type names"),
    ({"events": [1]}, "events", "list of event type names"),
    ({"filter": {"no-such-operator": [1]}}, "filter", "not a valid JSON-Logic condition"),
    ({"secret": 12}, "secret", "must be a string"),
    ({"secret": "whsec_not base64!"}, "secret", "omit it to have one generated"),
    ({"secret": ""}, "secret", "omit it to have one generated"),
    ({"retry": "sometimes"}, "retry", "unknown retry policy"),
    ({"retry": [True]}, "retry", "retry delay #1"),
    ({"retry": [-1]}, "retry", "retry delay #1"),
    ({"retry": 5}, "retry", "retry must be"),
    ({"disable_after": 0}, "disable_after", "positive integer or null"),
    ({"disable_after": True}, "disable_after", "positive integer or null"),
    ({"disable_after": 2.5}, "disable_after", "positive integer or null"),
    ({"disable_after": "3"}, "disable_after", "positive integer or null"),
    ({"description": 1}, "description", "at most 1000 characters"),
    ({"description": "x" * 1001}, "description", "at most 1000 characters"),
    ({"status": "disabled"}, "status", "unknown field"),
    ({"id": "wht_mine"}, "id", "unknown field"),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_CREATE)
async def test_create_refuses_a_bad_field_naming_it(
    fields: dict[str, Any], field: str, message: str
) -> None:
    body = fields if "url" in fields or not fields else {"url": PUBLIC_URL, **fields}
    with pytest.raises(InvalidInput) as raised:
        await _create(body)
    assert raised.value.field == field
    assert message in raised.value.message


async def test_the_unknown_field_message_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        await _create({"url": PUBLIC_URL, "zeta": 1, "alpha": 2})
    assert raised.value.field == "alpha"  # the first in sorted order, deterministically
    assert all(name in raised.value.message for name in FIELDS)


async def test_a_private_address_inside_allowed_networks_is_accepted() -> None:
    assert (await _create({"url": "http://10.20.3.4:8080/in"})).url == "http://10.20.3.4:8080/in"


async def test_with_private_targets_allowed_only_the_syntax_is_checked() -> None:
    open_settings = load_settings(env={}, delivery={"allow_private_targets": True})
    target = await _create({"url": "http://127.0.0.1:9/hook"}, open_settings)
    assert target.url == "http://127.0.0.1:9/hook"
    with pytest.raises(InvalidInput) as raised:
        await _create({"url": "mailto:ops@example.com"}, open_settings)
    assert raised.value.field == "url"


async def test_an_update_changes_only_what_it_names() -> None:
    target = _existing(events=("a",), description="old", consecutive_failures=2)
    updated = await update_target(
        target, {"description": "new", "events": ["b", "b"]}, GUARDED, LOGIC
    )
    assert updated.description == "new"
    assert updated.events == ("b",)
    assert updated.updated_at > target.updated_at
    unchanged = ("id", "url", "secret", "retry", "disable_after", "status", "created_at")
    for name in unchanged:
        assert getattr(updated, name) == getattr(target, name), name
    assert updated.consecutive_failures == 2


async def test_reactivating_a_target_clears_its_failure_count() -> None:
    target = _existing(status="disabled", consecutive_failures=3)
    updated = await update_target(target, {"status": "active"}, GUARDED, LOGIC)
    assert (updated.status, updated.consecutive_failures) == ("active", 0)


async def test_disabling_a_target_keeps_its_failure_count() -> None:
    target = _existing(consecutive_failures=1)
    updated = await update_target(target, {"status": "disabled"}, GUARDED, LOGIC)
    assert (updated.status, updated.consecutive_failures) == ("disabled", 1)


async def test_a_null_secret_on_update_generates_a_new_one() -> None:
    target = _existing()
    updated = await update_target(target, {"secret": None}, GUARDED, LOGIC)
    assert updated.secret != target.secret
    assert secret_problem(updated.secret) is None


async def test_null_clears_the_optional_fields_on_update() -> None:
    target = _existing(
        events=("a",), filter={"==": [1, 1]}, retry="none", disable_after=5, description="d"
    )
    body = {"events": None, "filter": None, "retry": None, "disable_after": None}
    updated = await update_target(target, {**body, "description": None}, GUARDED, LOGIC)
    assert (updated.events, updated.filter, updated.retry) == ((), None, "standard")
    assert (updated.disable_after, updated.description) == (None, "")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"status": "paused"}, "status", "'active' or 'disabled'"),
        ({"status": None}, "status", "'active' or 'disabled'"),
        ({"url": "http://127.0.0.1/"}, "url", "refused"),
        ({"url": None}, "url", "absolute http(s) URL"),
        ({"secret": "nope!"}, "secret", "omit it to have one generated"),
        ({"retry": "often"}, "retry", "unknown retry policy"),
        ({"disable_after": -1}, "disable_after", "positive integer"),
        ({"filter": {"bogus": []}}, "filter", "JSON-Logic"),
        ({"events": [None]}, "events", "list of event type names"),
        ({"description": ["x"]}, "description", "at most 1000"),
        ({"id": "wht_2"}, "id", "cannot be changed"),
        ({"consecutive_failures": 0}, "consecutive_failures", "cannot be changed"),
        ({"created_at": 1}, "created_at", "cannot be changed"),
    ],
)
async def test_update_refuses_a_bad_field_naming_it(
    fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        await update_target(_existing(), fields, GUARDED, LOGIC)
    assert raised.value.field == field
    assert message in raised.value.message
    if "cannot be changed" in message:
        assert all(name in raised.value.message for name in PATCHABLE)


async def test_a_refused_update_leaves_the_target_as_it_was() -> None:
    target = _existing()
    snapshot = dataclasses.replace(target)
    with pytest.raises(InvalidInput):
        await update_target(target, {"description": "new", "status": "gone"}, GUARDED, LOGIC)
    assert target == snapshot


def test_bad_target_fields_are_422_naming_the_field_and_store_nothing(
    settings: Settings,
) -> None:
    """The admin routes answer the refusals above as 422 `validation_error` with the field."""
    with harness.running_gateway(settings) as gw:
        refused = gw.admin.post("/v1/webhook-targets", json={"url": "ftp://x/", "events": ["a"]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error"
        assert refused.json()["field"] == "url"
        unknown = gw.admin.post("/v1/webhook-targets", json={"url": "http://127.0.0.1:9/", "x": 1})
        assert (unknown.status_code, unknown.json()["field"]) == (422, "x")
        assert gw.admin.get("/v1/webhook-targets").json()["data"] == []

        created = gw.admin.post("/v1/webhook-targets", json={"url": "http://127.0.0.1:9/"})
        assert created.status_code == 201, created.text
        body = created.json()
        harness.track_secret(body["secret"])
        assert secret_problem(body["secret"]) is None
        patched = gw.admin.patch(f"/v1/webhook-targets/{body['id']}", json={"status": "paused"})
        assert (patched.status_code, patched.json()["field"]) == (422, "status")
        shown = gw.admin.get(f"/v1/webhook-targets/{body['id']}").json()
        assert shown["status"] == "active"
        assert "secret" not in shown
