"""Inbound signatures end to end (docs/design.md §3 401 row, §6): an app with a signing secret
accepts the signatures of its `signature_scheme` (Standard Webhooks by default, or
`X-Webhook-Signature: sha256=<hex>` with `hmac-sha256`) made by an independent
implementation (the `standardwebhooks` library, plain hmac), and answers every bad or
malformed signature with exactly 401 `{"error": "invalid_signature"}`, never 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import pytest
from standardwebhooks import Webhook

pytestmark = pytest.mark.e2e

INVALID = b'{"error":"invalid_signature"}'
BODY = b'{"event_type":"order.paid","amount":42}'


def new_secret() -> str:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    harness.track_secret(secret)
    return secret


def standard(secret: str, body: bytes, msg_id: str = "msg_1", at: float | None = None) -> dict:
    when = datetime.fromtimestamp(int(time.time() if at is None else at), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


def plain(secret: str, body: bytes) -> str:
    """`hmac-sha256`: the secret is the key as given (its UTF-8 bytes), not base64-decoded."""
    key = secret.encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


@pytest.fixture
def signed(gateway: harness.Gateway) -> tuple[harness.Gateway, str, str, str]:
    """(gateway, app id, token, secret) for an app that requires signatures."""
    secret = new_secret()
    app_id, token = gateway.create_app("signed", signing_secret=secret, rate=1000, burst=1000)
    return gateway, app_id, token, secret


@pytest.fixture
def plain_signed(gateway: harness.Gateway) -> tuple[harness.Gateway, str, str, str]:
    """(gateway, app id, token, secret) for an app with `signature_scheme: hmac-sha256`."""
    secret = new_secret()
    app_id, token = gateway.create_app(
        "plain", signing_secret=secret, signature_scheme="hmac-sha256", rate=1000, burst=1000
    )
    return gateway, app_id, token, secret


def post(gw: harness.Gateway, token: str, body: bytes, headers: dict[str, Any]) -> Any:
    return gw.public.post(
        f"/api/event/{token}",
        content=body,
        headers={"content-type": "application/json", **headers},
    )


def stored_ids(gw: harness.Gateway, app_id: str) -> list[str]:
    response = gw.admin.get("/v1/events", params={"app_id": app_id})
    return [e["id"] for e in response.json()["data"]]


def test_standard_webhooks_signature_is_accepted(signed: Any) -> None:
    gw, app_id, token, secret = signed
    response = post(gw, token, BODY, standard(secret, BODY, "msg_a"))
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert stored_ids(gw, app_id) == [event_id]
    # the webhook-id doubles as the idempotency key: a redelivery is a duplicate
    again = post(gw, token, BODY, standard(secret, BODY, "msg_a"))
    assert again.status_code == 200
    assert again.json() == {"accepted": True, "event_id": event_id, "duplicate": True}
    assert stored_ids(gw, app_id) == [event_id]


def test_any_listed_v1_signature_may_match(signed: Any) -> None:
    gw, _, token, secret = signed
    headers = standard(secret, BODY, "msg_b")
    good = headers["webhook-signature"]
    other = Webhook(new_secret()).sign("msg_b", datetime.now(UTC), BODY.decode())
    headers["webhook-signature"] = f"v1a,xyz {other} v1,!!notbase64 {good}"
    assert post(gw, token, BODY, headers).status_code == 202


def test_timestamp_within_five_minutes_is_accepted(signed: Any) -> None:
    gw, _, token, secret = signed
    now = time.time()
    assert post(gw, token, BODY, standard(secret, BODY, "m1", now - 240)).status_code == 202
    assert post(gw, token, BODY, standard(secret, BODY, "m2", now + 240)).status_code == 202


@pytest.mark.parametrize("prefix", ["sha256=", "SHA256="])
def test_x_webhook_signature_sha256_is_accepted(plain_signed: Any, prefix: str) -> None:
    gw, app_id, token, secret = plain_signed
    signature = prefix + plain(secret, BODY).removeprefix("sha256=")
    response = post(gw, token, BODY, {"X-Webhook-Signature": signature})
    assert response.status_code == 202, response.text
    assert stored_ids(gw, app_id) == [response.json()["event_id"]]


def test_uppercase_hex_digest_is_accepted(plain_signed: Any) -> None:
    gw, _, token, secret = plain_signed
    signature = "sha256=" + plain(secret, BODY).removeprefix("sha256=").upper()
    assert post(gw, token, BODY, {"X-Webhook-Signature": signature}).status_code == 202


def _bad_headers(secret: str) -> dict[str, dict[str, Any]]:
    other = new_secret()
    good = standard(secret, BODY, "msg_x")
    old = time.time() - 400
    return {
        "no headers": {},
        "wrong secret (standard)": standard(other, BODY, "msg_x"),
        "wrong secret (sha256)": {"X-Webhook-Signature": plain(other, BODY)},
        "other body signed": standard(secret, b'{"event_type":"order.paid","amount":43}'),
        "other body signed (sha256)": {"X-Webhook-Signature": plain(secret, b"{}")},
        "other id signed": {**good, "webhook-id": "msg_y"},
        "timestamp too old": standard(secret, BODY, "msg_x", old),
        "timestamp in the future": standard(secret, BODY, "msg_x", time.time() + 400),
        "timestamp changed": {**good, "webhook-timestamp": str(int(time.time()) - 1)},
        "timestamp not a number": {**good, "webhook-timestamp": "soon"},
        "timestamp float": {**good, "webhook-timestamp": good["webhook-timestamp"] + ".5"},
        "timestamp negative": {**good, "webhook-timestamp": "-1"},
        "timestamp huge": {**good, "webhook-timestamp": "9" * 400},
        "timestamp non-ascii digits": {**good, "webhook-timestamp": "١٢٣".encode()},
        "missing webhook-id": {k: v for k, v in good.items() if k != "webhook-id"},
        "empty webhook-id": {**good, "webhook-id": ""},
        "missing timestamp": {k: v for k, v in good.items() if k != "webhook-timestamp"},
        "id and timestamp only": {k: v for k, v in good.items() if k != "webhook-signature"},
        "empty signature": {**good, "webhook-signature": ""},
        "signature without version": {**good, "webhook-signature": good["webhook-signature"][3:]},
        "only v2": {**good, "webhook-signature": "v2," + good["webhook-signature"][3:]},
        "not base64": {**good, "webhook-signature": "v1,%%%%"},
        "bad padding": {**good, "webhook-signature": "v1,abc"},
        "comma only": {**good, "webhook-signature": ","},
        "truncated signature": {**good, "webhook-signature": good["webhook-signature"][:-8]},
        "latin-1 bytes in id": {**good, "webhook-id": b"msg_\xff\xfe"},
        "sha256 empty": {"X-Webhook-Signature": "sha256="},
        "sha256 not hex": {"X-Webhook-Signature": "sha256=" + "zz" * 32},
        "sha256 short": {"X-Webhook-Signature": plain(secret, BODY)[:-1]},
        "sha256 long": {"X-Webhook-Signature": plain(secret, BODY) + "00"},
        "md5 scheme": {"X-Webhook-Signature": "md5=" + "0" * 32},
        "no scheme": {"X-Webhook-Signature": plain(secret, BODY).removeprefix("sha256=")},
        "garbage": {"X-Webhook-Signature": "\u00e9t\u00e9 sha256".encode("latin-1")},
    }


def test_every_bad_or_malformed_signature_gets_401(signed: Any) -> None:
    gw, app_id, token, secret = signed
    for name, headers in _bad_headers(secret).items():
        response = post(gw, token, BODY, headers)
        assert (response.status_code, response.content) == (401, INVALID), name
    assert stored_ids(gw, app_id) == []
    # and the app still takes a correctly signed event afterwards
    assert post(gw, token, BODY, standard(secret, BODY, "msg_ok")).status_code == 202


def test_app_without_secret_ignores_signature_headers(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("open")
    headers = {"webhook-signature": "v1,%%%", "X-Webhook-Signature": "md5=0"}
    assert post(gateway, token, BODY, headers).status_code == 202


def test_secret_added_and_removed_through_patch(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("later")
    assert post(gateway, token, BODY, {}).status_code == 202
    secret = new_secret()
    patched = gateway.admin.patch(f"/v1/apps/{app_id}", json={"signing_secret": secret})
    assert patched.status_code == 200
    assert patched.json()["has_signing_secret"] is True
    assert secret not in patched.text
    assert post(gateway, token, BODY, {}).status_code == 401
    assert post(gateway, token, BODY, standard(secret, BODY)).is_success
    assert gateway.admin.patch(f"/v1/apps/{app_id}", json={"signing_secret": None}).is_success
    assert post(gateway, token, BODY, {}).status_code == 202


def test_signature_is_checked_after_size_and_before_json(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, ingest={"max_body_bytes": 1024})
    with harness.running_gateway(settings) as gw:
        secret = new_secret()
        _, token = gw.create_app("signed", signing_secret=secret, rate=1000, burst=1000)
        big = b'{"a":"' + b"x" * 4000 + b'"}'
        too_large = post(gw, token, big, {"X-Webhook-Signature": "sha256=" + "0" * 64})
        assert too_large.status_code == 413
        assert too_large.json() == {"error": "payload_too_large", "limit": 1024}
        # a well-signed big body is still too large
        assert post(gw, token, big, standard(secret, big)).status_code == 413
        # bad signature over a body that is not JSON: 401 first
        bad = post(gw, token, b"not json", {"X-Webhook-Signature": "sha256=" + "0" * 64})
        assert (bad.status_code, bad.content) == (401, INVALID)
        # good signature over a body that is not JSON: then 400
        good = post(gw, token, b"not json", standard(secret, b"not json", "msg_nj"))
        assert good.status_code == 400
        assert good.json()["error"] == "invalid_json"
        not_object = post(gw, token, b"[]", standard(secret, b"[]", "msg_arr"))
        assert not_object.status_code == 400
        assert not_object.json()["error"] == "invalid_event"


def test_rate_limit_answers_before_the_signature_check(gateway: harness.Gateway) -> None:
    secret = new_secret()
    _, token = gateway.create_app("signed", signing_secret=secret, rate=0.01, burst=1)
    assert post(gateway, token, BODY, standard(secret, BODY)).is_success
    refused = post(gateway, token, BODY, {"X-Webhook-Signature": "sha256=" + "0" * 64})
    assert (refused.status_code, refused.content) == (429, b'{"rateLimited":true}')


def test_captured_request_stripped_to_the_body_only_header_is_refused(signed: Any) -> None:
    """The downgrade of issue 10 item 7: a standard-webhooks app (the default) never falls
    back to `X-Webhook-Signature`, even when it is a correct HMAC of the body."""
    gw, app_id, token, secret = signed
    assert gw.admin.get(f"/v1/apps/{app_id}").json()["signature_scheme"] == "standard-webhooks"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stripped = {"X-Webhook-Signature": "sha256=" + hmac.new(key, BODY, hashlib.sha256).hexdigest()}
    response = post(gw, token, BODY, stripped)
    assert (response.status_code, response.content) == (401, INVALID)
    assert stored_ids(gw, app_id) == []


def _github(secret: str, body: bytes) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, "sha256").hexdigest()
    }


def test_scheme_set_by_patch_verifies_only_its_own_headers(gateway: harness.Gateway) -> None:
    secret = new_secret()
    app_id, token = gateway.create_app("gh", signing_secret=secret, rate=1000, burst=1000)
    patched = gateway.admin.patch(f"/v1/apps/{app_id}", json={"signature_scheme": "github"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["signature_scheme"] == "github"
    assert post(gateway, token, BODY, _github(secret, BODY)).status_code == 202
    # the Standard Webhooks headers of the same secret no longer count, nor the plain one
    for headers in (standard(secret, BODY, "msg_sw"), {"X-Webhook-Signature": plain(secret, BODY)}):
        response = post(gateway, token, BODY, headers)
        assert (response.status_code, response.content) == (401, INVALID)
    # malformed headers of the scheme: 401, never 500
    for bad in ("", "sha256=", "sha256=zz", "md5=00", "sha256=" + "0" * 64):
        response = post(gateway, token, BODY, {"X-Hub-Signature-256": bad})
        assert (response.status_code, response.content) == (401, INVALID), bad


def test_stripe_and_slack_schemes_end_to_end(gateway: harness.Gateway) -> None:
    secret = "sk_test_" + secrets.token_hex(16)
    harness.track_secret(secret)
    _, stripe_token = gateway.create_app(
        "stripe", signing_secret=secret, signature_scheme="stripe", rate=1000, burst=1000
    )
    _, slack_token = gateway.create_app(
        "slack", signing_secret=secret, signature_scheme="slack", rate=1000, burst=1000
    )
    now = str(int(time.time()))
    v1 = hmac.new(secret.encode(), f"{now}.".encode() + BODY, "sha256").hexdigest()
    assert post(gateway, stripe_token, BODY, {"Stripe-Signature": f"t={now},v1={v1}"}).is_success
    old = str(int(time.time()) - 400)
    v1_old = hmac.new(secret.encode(), f"{old}.".encode() + BODY, "sha256").hexdigest()
    stale = post(gateway, stripe_token, BODY, {"Stripe-Signature": f"t={old},v1={v1_old}"})
    assert stale.status_code == 401
    v0 = hmac.new(secret.encode(), f"v0:{now}:".encode() + BODY, "sha256").hexdigest()
    slack = {"X-Slack-Signature": "v0=" + v0, "X-Slack-Request-Timestamp": now}
    assert post(gateway, slack_token, BODY, slack).is_success
    # each refuses the other's headers and the malformed ones
    for token, headers in (
        (stripe_token, slack),
        (slack_token, {"Stripe-Signature": f"t={now},v1={v1}"}),
        (stripe_token, {"Stripe-Signature": "t=,v1=,,=="}),
        (slack_token, {"X-Slack-Signature": "v0=" + v0, "X-Slack-Request-Timestamp": "x"}),
    ):
        response = post(gateway, token, BODY, headers)
        assert (response.status_code, response.content) == (401, INVALID)


def test_shopify_scheme_end_to_end(gateway: harness.Gateway) -> None:
    secret = "shpss_" + secrets.token_hex(16)
    harness.track_secret(secret)
    _, token = gateway.create_app("shop", signing_secret=secret, signature_scheme="shopify")
    digest = base64.b64encode(hmac.digest(secret.encode(), BODY, "sha256")).decode()
    assert post(gateway, token, BODY, {"X-Shopify-Hmac-Sha256": digest}).is_success
    for bad in ("%%%", "", base64.b64encode(b"x" * 32).decode()):
        response = post(gateway, token, BODY, {"X-Shopify-Hmac-Sha256": bad})
        assert (response.status_code, response.content) == (401, INVALID), bad


def test_unknown_scheme_and_unusable_secret_are_422(gateway: harness.Gateway) -> None:
    response = gateway.admin.post(
        "/v1/apps", json={"name": "x", "signing_secret": "abc", "signature_scheme": "md5"}
    )
    assert response.status_code == 422, response.text
    assert "signature_scheme" in response.text
    response = gateway.admin.post("/v1/apps", json={"name": "y", "signing_secret": "not base64!"})
    assert response.status_code == 422, response.text
    assert "signing_secret" in response.text
    app_id, _ = gateway.create_app("z", signing_secret="plain text", signature_scheme="github")
    # switching back to standard-webhooks with a secret that is not whsec_<base64>: refused
    patched = gateway.admin.patch(
        f"/v1/apps/{app_id}", json={"signature_scheme": "standard-webhooks"}
    )
    assert patched.status_code == 422, patched.text
    bad = gateway.admin.patch(f"/v1/apps/{app_id}", json={"signature_scheme": 7})
    assert bad.status_code == 422
    assert gateway.admin.get(f"/v1/apps/{app_id}").json()["signature_scheme"] == "github"
