"""Standard Webhooks signing: the spec's known answer, interop with the reference library, and
inbound verification that refuses every bad header with `SignatureError` only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from actions.errors import ActionError, SignatureError
from actions.signing import (
    DEFAULT_TOLERANCE,
    Signer,
    Verifier,
    decode_secret,
    generate_secret,
    verify,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"event_type": "job_completed", "phone": "+15551234567"}'
NOW = 1_700_000_000


def signed(body: bytes = BODY, *, timestamp: int = NOW, msg_id: str = "dlv_01") -> dict[str, str]:
    return Signer(SECRET).headers(msg_id, timestamp, body)


# --- secrets ----------------------------------------------------------------------------------


def test_generated_secret_is_whsec_base64_of_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert len(decode_secret(first)) == 32
    assert first != second


def test_decode_secret_strips_prefix_and_accepts_bare_or_unpadded_base64() -> None:
    key = decode_secret(SECRET)
    assert key == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == key
    unpadded = base64.b64encode(b"sixteen byte key").decode().rstrip("=")
    assert decode_secret("whsec_" + unpadded) == b"sixteen byte key"


@pytest.mark.parametrize("secret", ["whsec_not*base64!", "whsec_", "", "whsec_a", "whsec_é"])
def test_malformed_secret_is_an_action_error_not_a_signature_error(secret: str) -> None:
    with pytest.raises(ActionError) as caught:
        decode_secret(secret)
    assert not isinstance(caught.value, SignatureError)
    with pytest.raises(ActionError):
        Signer(secret)
    # A bad secret is our configuration at fault: never answered as a bad signature (401).
    with pytest.raises(ActionError) as caught:
        verify(secret, signed(), BODY, now=NOW)
    assert not isinstance(caught.value, SignatureError)


# --- known answer -----------------------------------------------------------------------------


def test_signing_reproduces_the_spec_known_answer(known_answer: dict[str, Any]) -> None:
    headers = Signer(known_answer["secret"]).headers(
        known_answer["msg_id"], known_answer["timestamp"], known_answer["body"].encode()
    )
    assert headers["webhook-signature"] == known_answer["signature"]
    assert headers["webhook-id"] == known_answer["msg_id"]
    assert headers["webhook-timestamp"] == str(known_answer["timestamp"])


def test_verification_accepts_the_known_answer_and_rejects_its_altered_twin(
    known_answer: dict[str, Any],
) -> None:
    headers = {
        "webhook-id": known_answer["msg_id"],
        "webhook-timestamp": str(known_answer["timestamp"]),
        "webhook-signature": known_answer["signature"],
    }
    body = known_answer["body"].encode()
    verify(known_answer["secret"], headers, body, now=known_answer["timestamp"])

    headers["webhook-signature"] = known_answer["must_reject"]
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(known_answer["secret"], headers, body, now=known_answer["timestamp"])


def test_known_answer_tolerance_is_ours(known_answer: dict[str, Any]) -> None:
    assert known_answer["tolerance_seconds"] == DEFAULT_TOLERANCE


def test_plain_signature_is_hex_hmac_sha256_of_the_body_with_the_same_key() -> None:
    expected = hmac.new(decode_secret(SECRET), BODY, hashlib.sha256).hexdigest()
    assert signed()["X-Webhook-Signature"] == f"sha256={expected}"


# --- interop with the reference library -------------------------------------------------------


def test_reference_library_accepts_our_signature() -> None:
    now = int(time.time())
    headers = Signer(SECRET).headers("dlv_interop", now, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "event_type": "job_completed",
        "phone": "+15551234567",
    }


def test_reference_library_accepts_our_signature_with_a_generated_secret() -> None:
    secret = generate_secret()
    headers = Signer(secret).headers("dlv_interop", int(time.time()), BODY)
    Webhook(secret).verify(BODY, headers)


def test_reference_library_rejects_our_signature_over_another_body() -> None:
    headers = Signer(SECRET).headers("dlv_interop", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY + b" ", headers)


def test_we_accept_what_the_reference_library_signs() -> None:
    now = int(time.time())
    signature = Webhook(SECRET).sign("msg_lib", datetime.fromtimestamp(now, tz=UTC), BODY.decode())
    headers = {
        "webhook-id": "msg_lib",
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    verify(SECRET, headers, BODY, now=time.time())
    Verifier(SECRET).verify(headers, BODY, now=time.time())


# --- verification -----------------------------------------------------------------------------


def test_verifier_accepts_our_own_headers_in_any_case() -> None:
    headers = {name.upper(): value for name, value in signed().items()}
    Verifier(SECRET).verify(headers, BODY, now=NOW)


def test_any_listed_v1_signature_is_accepted_and_other_versions_ignored() -> None:
    good = signed()["webhook-signature"]
    garbled = "v1,AAAA v1a,c29tZXRoaW5n v2,Zm9v v1,!!notbase64!! nonsense"
    headers = signed() | {"webhook-signature": f"{garbled} {good}"}
    verify(SECRET, headers, BODY, now=NOW)


def test_a_correct_signature_under_another_version_is_not_accepted() -> None:
    encoded = signed()["webhook-signature"].removeprefix("v1,")
    headers = signed() | {"webhook-signature": f"v2,{encoded}"}
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify(SECRET, headers, BODY, now=NOW)


def test_tampered_body_is_refused() -> None:
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(SECRET, signed(), BODY.replace(b"555", b"556"), now=NOW)


def test_signature_under_another_secret_is_refused() -> None:
    headers = Signer(generate_secret()).headers("dlv_01", NOW, BODY)
    with pytest.raises(SignatureError):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("offset", [-DEFAULT_TOLERANCE, 0, DEFAULT_TOLERANCE])
def test_timestamps_within_tolerance_are_accepted(offset: int) -> None:
    verify(SECRET, signed(timestamp=NOW + offset), BODY, now=NOW)


def test_stale_timestamp_is_refused() -> None:
    headers = signed(timestamp=NOW - DEFAULT_TOLERANCE - 1)
    with pytest.raises(SignatureError, match="too old"):
        verify(SECRET, headers, BODY, now=NOW)


def test_future_timestamp_is_refused() -> None:
    headers = signed(timestamp=NOW + DEFAULT_TOLERANCE + 1)
    with pytest.raises(SignatureError, match="future"):
        verify(SECRET, headers, BODY, now=NOW)


def test_tolerance_is_configurable() -> None:
    headers = signed(timestamp=NOW - 60)
    Verifier(SECRET, tolerance=60).verify(headers, BODY, now=NOW)
    with pytest.raises(SignatureError):
        Verifier(SECRET, tolerance=59).verify(headers, BODY, now=NOW)


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


STANDARD = {key: value for key, value in signed().items() if key.startswith("webhook-")}

MALFORMED: list[tuple[str, dict[str, str]]] = [
    ("no headers at all", {}),
    ("garbage signature", STANDARD | {"webhook-signature": "garbage"}),
    ("bad base64", STANDARD | {"webhook-signature": "v1,***not base64***"}),
    ("signature of the wrong length", STANDARD | {"webhook-signature": "v1,AAAA"}),
    ("empty signature", STANDARD | {"webhook-signature": ""}),
    ("comma only", STANDARD | {"webhook-signature": ","}),
    ("missing timestamp", without(STANDARD, "webhook-timestamp")),
    ("missing id", without(STANDARD, "webhook-id")),
    ("missing signature beside id", without(STANDARD, "webhook-signature")),
    ("fractional timestamp", STANDARD | {"webhook-timestamp": f"{NOW}.5"}),
    ("word timestamp", STANDARD | {"webhook-timestamp": "yesterday"}),
    ("negative timestamp", STANDARD | {"webhook-timestamp": f"-{NOW}"}),
    ("huge timestamp", STANDARD | {"webhook-timestamp": "9" * 5000}),
    (
        "non-ascii digits",
        STANDARD | {"webhook-timestamp": "\u0661\u0667" + "\u0660" * 8},
    ),  # Arabic-Indic
    ("unencodable id", STANDARD | {"webhook-id": "dlv_\udcff"}),
    ("plain: wrong scheme", {"X-Webhook-Signature": "md5=" + "0" * 64}),
    ("plain: not hex", {"X-Webhook-Signature": "sha256=" + "z" * 64}),
    ("plain: short", {"X-Webhook-Signature": "sha256=abcd"}),
    ("plain: no scheme", {"X-Webhook-Signature": "0" * 64}),
    ("plain: wrong digest", {"X-Webhook-Signature": "sha256=" + "0" * 64}),
]


@pytest.mark.parametrize(("case", "headers"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_malformed_headers_raise_only_signature_error(case: str, headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, headers, BODY, now=NOW)
    assert caught.value.reason
    assert SECRET.removeprefix("whsec_") not in caught.value.reason


def test_plain_signature_alone_is_accepted_in_any_case() -> None:
    plain = signed()["X-Webhook-Signature"]
    verify(SECRET, {"x-webhook-signature": plain}, BODY, now=NOW)
    verify(
        SECRET, {"X-WEBHOOK-SIGNATURE": plain.upper().replace("SHA256=", "sha256=")}, BODY, now=0
    )


def test_standard_headers_take_precedence_over_the_plain_signature() -> None:
    headers = signed() | {"webhook-signature": "v1,AAAA"}
    with pytest.raises(SignatureError):
        verify(SECRET, headers, BODY, now=NOW)


def test_webhook_id_alone_does_not_hide_a_plain_signature() -> None:
    # Senders may send webhook-id only as an idempotency key, signing the plain way.
    headers = {"webhook-id": "evt_1", "X-Webhook-Signature": signed()["X-Webhook-Signature"]}
    verify(SECRET, headers, BODY, now=NOW)


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ActionError):
        Verifier(SECRET, tolerance=-1)
