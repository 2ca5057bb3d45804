"""Webhook signatures: Standard Webhooks v1 plus a plain `X-Webhook-Signature: sha256=<hex>`.

Outbound deliveries are signed by a `Signer`; inbound events of apps with a signing secret are
checked by a `Verifier`. Both hold the HMAC state keyed once at construction and copy it per
message: the key schedule is paid at load, not per request (both sit on hot paths).

The secret format is Standard Webhooks': `whsec_` + base64 of the key bytes; the signed content
of a `v1` signature is `"{webhook-id}.{webhook-timestamp}." + body`, with the raw body bytes as
sent. The plain `sha256=` signature covers the body alone, so it carries no replay protection;
it exists for receivers that cannot implement Standard Webhooks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from actions.errors import ActionError, SignatureError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds a webhook-timestamp may be off, either way (spec: 5 minutes)
SECRET_BYTES = 32

# ASCII digits only (str.isdigit would admit other scripts' digits); twelve digits are enough
# for any epoch second for the next 30,000 years and keep int() cheap.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


INVALID_SECRET = "not a valid signing secret (expected whsec_<base64>)"


def generate_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a secret: strip `whsec_` if present, base64-decode the rest.

    Missing padding is tolerated, as the reference library does; characters outside the
    base64 alphabet are refused rather than skipped (the reference library would silently
    drop them and sign with a different key than the operator meant).
    """
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ActionError("signing secret is not valid base64 (expected whsec_<base64>)") from exc
    if not key:
        raise ActionError("signing secret is empty")
    return key


def secret_problem(secret: str) -> str | None:
    """Why `secret` cannot sign or verify Standard Webhooks, or None if it can.

    Valid is what `decode_secret` takes: `whsec_` + base64 of a non-empty key, padding
    optional, the prefix optional too (the reference libraries accept bare base64), spaces
    around it ignored (an env var read from a file keeps its newline). Checked wherever a
    secret enters (rule load, the admin API, the CLI), so that a bad one is refused there
    instead of failing every delivery.
    """
    try:
        decode_secret(secret)
    except ActionError:
        return INVALID_SECRET
    return None


def _keyed_mac(secret: str) -> hmac.HMAC:
    return hmac.new(decode_secret(secret), digestmod=hashlib.sha256)


class Signer:
    """Signs outbound deliveries with one secret; build once per secret, reuse per message."""

    __slots__ = ("_mac",)

    def __init__(self, secret: str) -> None:
        self._mac = _keyed_mac(secret)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The signature headers for one message.

        `msg_id` must stay the same on every retry of one delivery so receivers can dedupe;
        `timestamp` is the epoch second of this attempt.
        """
        v1 = self._mac.copy()
        v1.update(f"{msg_id}.{timestamp}.".encode())
        v1.update(body)
        plain = self._mac.copy()
        plain.update(body)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(v1.digest()).decode("ascii"),
            "X-Webhook-Signature": "sha256=" + plain.hexdigest(),
        }


class Verifier:
    """Checks inbound signatures against one secret; build once per app, reuse per request.

    Standard Webhooks headers take precedence: when `webhook-signature` is present, the
    `webhook-id` and `webhook-timestamp` must be too and the timestamp must be within
    `tolerance` seconds of `now`. Otherwise `X-Webhook-Signature: sha256=<hex>` is checked.
    Every failure raises `SignatureError`, whatever the headers hold.
    """

    __slots__ = ("_mac", "_tolerance")

    def __init__(self, secret: str, *, tolerance: int = DEFAULT_TOLERANCE) -> None:
        if tolerance < 0:
            raise ActionError(f"signature tolerance must be >= 0 seconds, got {tolerance}")
        self._mac = _keyed_mac(secret)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> None:
        """Return if `body` is signed with this secret; raise `SignatureError` otherwise."""
        lowered = {name.lower(): value for name, value in headers.items()}
        signature = lowered.get("webhook-signature")
        if signature is not None:
            self._verify_standard(lowered, signature, body, now)
            return
        plain = lowered.get("x-webhook-signature")
        if plain is not None:
            self._verify_plain(plain, body)
            return
        if "webhook-id" in lowered or "webhook-timestamp" in lowered:
            raise SignatureError("missing webhook-signature header")
        raise SignatureError("missing signature headers")

    def _verify_standard(
        self, headers: Mapping[str, str], signature: str, body: bytes, now: float
    ) -> None:
        msg_id = headers.get("webhook-id")
        if not msg_id:
            raise SignatureError("missing webhook-id header")
        timestamp = headers.get("webhook-timestamp")
        if not timestamp:
            raise SignatureError("missing webhook-timestamp header")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise SignatureError("webhook-timestamp is not an integer")
        sent_at = int(timestamp)
        if sent_at < now - self._tolerance:
            raise SignatureError("webhook-timestamp is too old")
        if sent_at > now + self._tolerance:
            raise SignatureError("webhook-timestamp is in the future")
        try:
            # The timestamp is signed as received, so the bytes match what the sender signed.
            prefix = f"{msg_id}.{timestamp}.".encode()
        except UnicodeEncodeError as exc:
            raise SignatureError("webhook-id is not valid text") from exc
        mac = self._mac.copy()
        mac.update(prefix)
        mac.update(body)
        expected = mac.digest()
        saw_v1 = False
        for entry in signature.split():
            version, comma, encoded = entry.partition(",")
            if version != "v1" or not comma:
                continue  # other versions (v1a, ...) are for other verifiers
            saw_v1 = True
            try:
                candidate = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue  # one garbled entry must not hide a valid one beside it
            if hmac.compare_digest(candidate, expected):
                return
        raise SignatureError("no matching signature" if saw_v1 else "no v1 signature")

    def _verify_plain(self, header: str, body: bytes) -> None:
        scheme, equals, digest = header.strip().partition("=")
        if scheme.lower() != "sha256" or not equals or not _HEX_SHA256.fullmatch(digest):
            raise SignatureError("X-Webhook-Signature is not sha256=<hex>")
        mac = self._mac.copy()
        mac.update(body)
        if not hmac.compare_digest(bytes.fromhex(digest), mac.digest()):
            raise SignatureError("no matching signature")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """One-off check of an inbound signature; see `Verifier` (use it on hot paths).

    Raises `SignatureError` for anything wrong with the headers or body. A malformed
    *secret* raises plain `ActionError` instead: it is our configuration at fault, not the
    sender, and must not be answered as a bad signature.
    """
    Verifier(secret, tolerance=tolerance).verify(headers, body, now=now)
