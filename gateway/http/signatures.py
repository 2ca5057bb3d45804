"""Inbound signature schemes: one verifier per app, checking only its own scheme's headers.

An app's `signature_scheme` names exactly one rule. A request carrying another scheme's
headers is refused, so a captured request cannot be downgraded to a weaker scheme (e.g. the
body-only `X-Webhook-Signature`, which has no timestamp, by stripping `webhook-*`).

Secrets: `standard-webhooks` takes `whsec_<base64>` (the key is the decoded bytes); every
other scheme uses the secret's UTF-8 bytes as the HMAC key, as its provider does. Each
verifier keys its HMAC once at construction and copies it per request (hot path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Protocol

from actions import Verifier as StandardVerifier
from actions import decode_secret
from actions.errors import ActionError, SignatureError

DEFAULT_SCHEME = "standard-webhooks"
SCHEMES = ("standard-webhooks", "hmac-sha256", "github", "stripe", "shopify", "slack")
TOLERANCE = 300  # seconds, for the schemes with a timestamp

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class InboundVerifier(Protocol):
    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        """Return if signed; raise `SignatureError` otherwise. `headers` keys are lowercase."""


def _check_secret(scheme: str, secret: str) -> bytes:
    if scheme == DEFAULT_SCHEME:
        return decode_secret(secret)
    if not secret:
        raise ActionError("signing secret is empty")
    return secret.encode()


def validate(scheme: str, secret: str) -> None:
    """Raise `ActionError` if `secret` cannot key `scheme` (unknown scheme: `ValueError`)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown signature scheme {scheme!r}; one of {', '.join(SCHEMES)}")
    _check_secret(scheme, secret)


def _fresh(timestamp: str | None, now: float, name: str, tolerance: int) -> str:
    """The timestamp as sent, if it is an integer within `tolerance` seconds of `now`."""
    if not timestamp:
        raise SignatureError(f"missing {name} header")
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        raise SignatureError(f"{name} is not an integer")
    sent_at = int(timestamp.strip())
    if abs(sent_at - now) > tolerance:
        raise SignatureError(f"{name} is outside the {tolerance} s tolerance")
    return timestamp.strip()


def _hex_equal(candidate: str, expected: bytes) -> bool:
    if not _HEX_SHA256.fullmatch(candidate):
        return False
    return hmac.compare_digest(bytes.fromhex(candidate), expected)


class _Hmac:
    __slots__ = ("_mac", "_tolerance")

    def __init__(self, key: bytes, tolerance: int) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        raise NotImplementedError

    def _digest(self, *parts: bytes) -> bytes:
        mac = self._mac.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()


class PlainVerifier(_Hmac):
    """`X-Webhook-Signature: [sha256=]<hex>` of the raw body. No timestamp: no replay guard."""

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        header = headers.get("x-webhook-signature")
        if header is None:
            raise SignatureError("missing X-Webhook-Signature header")
        digest = header.strip()
        if digest[:7].lower() == "sha256=":
            digest = digest[7:]
        if not _hex_equal(digest, self._digest(body)):
            raise SignatureError("no matching signature")


class GithubVerifier(_Hmac):
    """`X-Hub-Signature-256: sha256=<hex>` of the raw body (GitHub)."""

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        header = headers.get("x-hub-signature-256")
        if header is None:
            raise SignatureError("missing X-Hub-Signature-256 header")
        prefix, _, digest = header.strip().partition("=")
        if prefix != "sha256" or not _hex_equal(digest, self._digest(body)):
            raise SignatureError("no matching signature")


class StripeVerifier(_Hmac):
    """`Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]`, HMAC of `"{t}." + body`, tolerance."""

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        header = headers.get("stripe-signature")
        if header is None:
            raise SignatureError("missing Stripe-Signature header")
        timestamp = None
        candidates: list[str] = []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                timestamp = value
            elif key == "v1":
                candidates.append(value)
        sent = _fresh(timestamp, now, "Stripe-Signature t", self._tolerance)
        expected = self._digest(sent.encode(), b".", body)
        if not any(_hex_equal(c, expected) for c in candidates):
            raise SignatureError("no matching signature")


class ShopifyVerifier(_Hmac):
    """`X-Shopify-Hmac-Sha256: <base64>` of the raw body (Shopify)."""

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        header = headers.get("x-shopify-hmac-sha256")
        if header is None:
            raise SignatureError("missing X-Shopify-Hmac-Sha256 header")
        try:
            candidate = base64.b64decode(header.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("X-Shopify-Hmac-Sha256 is not base64") from None
        if not hmac.compare_digest(candidate, self._digest(body)):
            raise SignatureError("no matching signature")


class SlackVerifier(_Hmac):
    """`X-Slack-Signature: v0=<hex>` of `"v0:{ts}:" + body`, `X-Slack-Request-Timestamp`."""

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        header = headers.get("x-slack-signature")
        if header is None:
            raise SignatureError("missing X-Slack-Signature header")
        sent = _fresh(
            headers.get("x-slack-request-timestamp"),
            now,
            "X-Slack-Request-Timestamp",
            self._tolerance,
        )
        version, _, digest = header.strip().partition("=")
        expected = self._digest(b"v0:", sent.encode(), b":", body)
        if version != "v0" or not _hex_equal(digest, expected):
            raise SignatureError("no matching signature")


class StandardOnly:
    """Standard Webhooks alone: the body-only `X-Webhook-Signature` is never consulted."""

    __slots__ = ("_inner",)

    def __init__(self, secret: str, tolerance: int) -> None:
        self._inner = StandardVerifier(secret, tolerance=tolerance)

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        if "webhook-signature" not in headers:
            raise SignatureError("missing webhook-signature header")
        self._inner.verify(headers, body, now=now)


class RefuseAll:
    """For an app whose stored secret cannot be used: fail closed, never open."""

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        raise SignatureError("the app's signing secret cannot be used")


_CLASSES: dict[str, type[_Hmac]] = {
    "hmac-sha256": PlainVerifier,
    "github": GithubVerifier,
    "stripe": StripeVerifier,
    "shopify": ShopifyVerifier,
    "slack": SlackVerifier,
}


def verifier(scheme: str, secret: str, *, tolerance: int = TOLERANCE) -> InboundVerifier:
    """The verifier of one app; raises `ActionError`/`ValueError` for a bad secret/scheme."""
    validate(scheme, secret)
    if scheme == DEFAULT_SCHEME:
        return StandardOnly(secret, tolerance)
    return _CLASSES[scheme](_check_secret(scheme, secret), tolerance)
