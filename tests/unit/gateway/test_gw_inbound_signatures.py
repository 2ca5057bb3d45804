"""Inbound signature schemes (gateway.http.signatures): known answers and no downgrade.

Standard Webhooks, GitHub and Slack use the examples published in their documentation
(Standard Webhooks: tests/data/standardwebhooks; GitHub "Validating webhook deliveries";
Slack "Verifying requests from Slack"). Stripe, Shopify and hmac-sha256 publish no fixed
example, so their expected values are computed here with the documented algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from actions.errors import ActionError, SignatureError
from gateway.http.signatures import SCHEMES, verifier

DATA = Path(__file__).parents[2] / "data" / "standardwebhooks" / "known-answer.json"
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SECRET = "shpss_or_whsec_any_text"
BODY = b'{"id":1}'
NOW = 1_700_000_000


def _hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_for(scheme: str, now: int = NOW) -> tuple[str, bytes, dict[str, str]]:
    """(secret, body, headers) correctly signed for `scheme` at `now`."""
    if scheme == "standard-webhooks":
        case = json.loads(DATA.read_text())
        headers = {
            "webhook-id": case["msg_id"],
            "webhook-timestamp": str(case["timestamp"]),
            "webhook-signature": case["signature"],
        }
        return case["secret"], case["body"].encode(), headers
    if scheme == "github":
        return GITHUB_SECRET, b"Hello, World!", {"x-hub-signature-256": GITHUB_SIGNATURE}
    if scheme == "slack":
        headers = {"x-slack-signature": SLACK_SIGNATURE, "x-slack-request-timestamp": str(now)}
        return SLACK_SECRET, SLACK_BODY, headers
    key = SECRET.encode()
    if scheme == "hmac-sha256":
        return SECRET, BODY, {"x-webhook-signature": "sha256=" + _hex(key, BODY)}
    if scheme == "stripe":
        v1 = _hex(key, f"{now}.".encode() + BODY)
        return SECRET, BODY, {"stripe-signature": f"t={now},v1={v1}"}
    assert scheme == "shopify"
    digest = base64.b64encode(hmac.digest(key, BODY, "sha256")).decode()
    return SECRET, BODY, {"x-shopify-hmac-sha256": digest}


def _now(scheme: str) -> int:
    if scheme == "standard-webhooks":
        return int(json.loads(DATA.read_text())["timestamp"])
    return SLACK_TS if scheme == "slack" else NOW


@pytest.mark.parametrize("scheme", SCHEMES)
def test_known_answer_is_accepted(scheme: str) -> None:
    now = _now(scheme)
    secret, body, headers = signed_for(scheme, now)
    verifier(scheme, secret).verify(headers, body, now=now)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_changed_body_byte_is_refused(scheme: str) -> None:
    now = _now(scheme)
    secret, body, headers = signed_for(scheme, now)
    with pytest.raises(SignatureError):
        verifier(scheme, secret).verify(headers, body[:-1] + b"?", now=now)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("other", SCHEMES)
def test_another_schemes_valid_headers_are_refused(scheme: str, other: str) -> None:
    """No downgrade: a request correctly signed for `other` with the same secret fails."""
    if scheme == other:
        return
    now = _now(other)
    secret, body, headers = signed_for(other, now)
    try:
        check = verifier(scheme, secret)
    except ActionError:
        return  # this secret cannot even key `scheme` (standard-webhooks needs whsec_)
    with pytest.raises(SignatureError):
        check.verify(headers, body, now=now)


def test_standard_webhooks_ignores_the_body_only_header() -> None:
    """The downgrade of issue 10: strip webhook-*, keep a valid X-Webhook-Signature."""
    secret, body, _ = signed_for("standard-webhooks")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    plain = {"x-webhook-signature": "sha256=" + _hex(key, body)}
    with pytest.raises(SignatureError, match="webhook-signature"):
        verifier("standard-webhooks", secret).verify(plain, body, now=_now("standard-webhooks"))


@pytest.mark.parametrize("scheme", ["stripe", "slack", "standard-webhooks"])
def test_timestamped_schemes_refuse_a_stale_request(scheme: str) -> None:
    now = _now(scheme)
    secret, body, headers = signed_for(scheme, now)
    with pytest.raises(SignatureError):
        verifier(scheme, secret).verify(headers, body, now=now + 301)


def test_hmac_sha256_has_no_timestamp_and_takes_an_unprefixed_digest() -> None:
    secret, body, headers = signed_for("hmac-sha256")
    bare = {"x-webhook-signature": headers["x-webhook-signature"].removeprefix("sha256=")}
    verifier("hmac-sha256", secret).verify(bare, body, now=NOW + 10**6)


MALFORMED = [
    {"stripe-signature": ""},
    {"stripe-signature": "t=,v1="},
    {"stripe-signature": "t=abc,v1=00"},
    {"stripe-signature": ",,,=,="},
    {"stripe-signature": f"t={NOW}"},
    {"x-shopify-hmac-sha256": "%%%"},
    {"x-shopify-hmac-sha256": ""},
    {"x-hub-signature-256": "sha256"},
    {"x-hub-signature-256": "sha256=zz"},
    {"x-slack-signature": "v0=00"},
    {"x-slack-signature": "v0=" + "0" * 64, "x-slack-request-timestamp": "soon"},
    {"x-slack-signature": "", "x-slack-request-timestamp": str(NOW)},
    {"x-webhook-signature": "sha256=\u00e9"},
    {"webhook-signature": "v1,%%", "webhook-id": "x", "webhook-timestamp": str(NOW)},
    {},
]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_malformed_headers_raise_signature_error_only(scheme: str) -> None:
    secret = signed_for(scheme)[0]
    check = verifier(scheme, secret)
    for headers in MALFORMED:
        with pytest.raises(SignatureError):
            check.verify(headers, BODY, now=NOW)


def test_unknown_scheme_and_unusable_secret_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown signature scheme"):
        verifier("md5", SECRET)
    with pytest.raises(ActionError):
        verifier("standard-webhooks", "whsec_notbase64!!")
    with pytest.raises(ActionError):
        verifier("github", "")
