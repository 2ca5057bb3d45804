"""Domain records of the gateway: integration apps, stored events and webhook targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from actions.model import hot_record

TargetStatus = Literal["active", "disabled"]

# Consecutive failed deliveries that disable a target when `disable_after` is not given.
DISABLE_AFTER_DEFAULT = 3

# A target disabled after failures is probed again after its `reenable_after` (this by
# default), the wait doubling after each failed probe up to `PROBE_INTERVAL_MAX`.
REENABLE_AFTER_DEFAULT = 600.0
PROBE_INTERVAL_MAX = 6 * 3600.0


def next_probe_interval(current: float) -> float:
    """The wait after a failed probe: twice the last one, at most `PROBE_INTERVAL_MAX`."""
    return min(current * 2, PROBE_INTERVAL_MAX)


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
    disable_after: int | None = DISABLE_AFTER_DEFAULT
    description: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    consecutive_failures: int = 0
    rate: float | None = None  # deliveries per second; None: unlimited
    burst: int | None = None  # set whenever `rate` is
    # Held, not dropped: while disabled, deliveries for the target are kept `held`. Disabled
    # after failures (`probe_interval` set), its oldest held delivery is sent as a probe at
    # `next_probe_at`; disabled by hand (`probe_interval` None), it is never probed.
    reenable_after: float = REENABLE_AFTER_DEFAULT
    disabled_at: float | None = None
    next_probe_at: float | None = None
    probe_interval: float | None = None
    probe_delivery_id: str | None = None  # the held delivery out as a probe right now
    # "fifo": its deliveries with one key (`ordering_key`, JSON-Logic on the event; None:
    # one key for the target) go one at a time, in accept order; None: unordered.
    ordering: Literal["fifo"] | None = None
    ordering_key: Any = None
