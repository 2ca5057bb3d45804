"""Errors of the `actions` package: building, signing and sending deliveries.

    HookgateError                (rules.errors)
    └── ActionError              an action could not be built or sent; a bad secret or policy
        ├── SignatureError       an inbound signature is missing, malformed, wrong or stale
        └── UnsafeTargetError    a target URL fails the SSRF guard

Library errors (binascii, ValueError from parsing, httpx) are translated into this tree where
they are caught, so callers map one family of errors to HTTP answers. Sending itself never
raises for network or HTTP failures: `actions.sender.send` records them in an `Attempt`.
"""

from __future__ import annotations

from rules.errors import HookgateError


class ActionError(HookgateError):
    """An action could not be built or sent (bad secret, bad retry policy, bad option)."""


class SignatureError(ActionError):
    """An inbound signature is missing, malformed, wrong or outside the timestamp tolerance.

    `reason` is short and safe to log; it never contains the secret or the expected signature.
    The HTTP edge answers 401 for this error whatever the reason.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnsafeTargetError(ActionError):
    """A target URL is refused by the SSRF guard.

    `reason` is a human sentence naming the host and why, e.g.
    "host 10.0.0.1 is a private address", fit to show to the operator who entered the URL.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
