"""Outbound delivery: action types, rendering, signing, retry policy, SSRF guard, sending.

Other packages import from here, never from inner modules.
"""

from actions.client import ClientSettings, DeliveryClient
from actions.dispatcher import DeliverySource, Dispatcher, DispatchSettings, TargetInfo
from actions.errors import ActionError, SignatureError, UnsafeTargetError
from actions.event import EventInfo, rfc3339
from actions.ids import delivery_id, id_floor, sortable_id
from actions.listen import build_listen_app, run_listen
from actions.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Lease,
    RateLimit,
    delivery_host,
    rule_rate_key,
    target_rate_key,
)
from actions.plan import plan_deliveries, preview_requests, retry_delays
from actions.registry import ACTION_TYPES, ActionType, needs_event
from actions.resolver import GuardedResolver
from actions.retry import RetryPolicy, next_attempt_at, parse_retry
from actions.sender import send
from actions.signing import (
    Signer,
    Verifier,
    decode_secret,
    generate_secret,
    secret_problem,
    verify,
)
from actions.ssrf import AddressPolicy, check_target, check_url, check_url_syntax
from actions.webhook import envelope

__all__ = [
    "ACTION_TYPES",
    "ActionError",
    "ActionType",
    "AddressPolicy",
    "Attempt",
    "ClientSettings",
    "Delivery",
    "DeliveryClient",
    "DeliverySource",
    "DeliveryStatus",
    "DispatchSettings",
    "Dispatcher",
    "EventInfo",
    "GuardedResolver",
    "Lease",
    "RateLimit",
    "RetryPolicy",
    "SignatureError",
    "Signer",
    "TargetInfo",
    "UnsafeTargetError",
    "Verifier",
    "build_listen_app",
    "check_target",
    "check_url",
    "check_url_syntax",
    "decode_secret",
    "delivery_host",
    "delivery_id",
    "envelope",
    "generate_secret",
    "id_floor",
    "needs_event",
    "next_attempt_at",
    "parse_retry",
    "plan_deliveries",
    "preview_requests",
    "retry_delays",
    "rfc3339",
    "rule_rate_key",
    "run_listen",
    "secret_problem",
    "send",
    "sortable_id",
    "target_rate_key",
    "verify",
]
