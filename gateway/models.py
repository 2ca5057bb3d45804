"""Domain records of the gateway: integration apps, stored events and webhook targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from actions.model import hot_record

TargetStatus = Literal["active", "disabled"]


@dataclass(frozen=True, slots=True)
class App:
    """An integration app: one secret event URL, its limits and optional checks.

    Only `token_hash` (SHA-256) of the token is kept; after a rotation with a grace period
    the previous hash stays valid until `previous_token_expires_at`.
    """

    id: str
    name: str
    token_hash: str
    enabled: bool = True
    rate: float | None = None  # None: the configured default
    burst: int | None = None
    schema: dict[str, Any] | None = None
    signing_secret: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    previous_token_hash: str | None = None
    previous_token_expires_at: float | None = None
    # How inbound requests are signed (gateway.http.signatures.SCHEMES); only with a secret.
    signature_scheme: str = "standard-webhooks"


@hot_record
class Event:
    """One accepted event as stored: the raw body exactly as received plus what matched."""

    id: str
    app_id: str
    event_type: str | None
    received_at: float
    payload: bytes  # the request body, byte for byte
    headers: dict[str, str] = field(default_factory=dict)
    matched_rules: tuple[str, ...] = ()
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A subscription made through the API; the matcher treats it as one more rule."""

    id: str
    url: str
    secret: str
    events: tuple[str, ...] = ()  # empty: every event type
    filter: Any = None  # JSON-Logic condition, None: always
    status: TargetStatus = "active"
    retry: str | tuple[float, ...] = "standard"
    disable_after: int | None = 3
    description: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    consecutive_failures: int = 0
    # "fifo": its deliveries with one key (`ordering_key`, JSON-Logic on the event; None:
    # one key for the target) go one at a time, in accept order; None: unordered.
    ordering: Literal["fifo"] | None = None
    ordering_key: Any = None
