"""Delivery records: what was queued for one (match, action) and every attempt to send it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from typing_extensions import dataclass_transform

# `held`: kept for a disabled webhook target, neither claimed nor attempted until the target is
# active again (or probed with it); see docs/design.md "Held, not dropped".
DeliveryStatus = Literal["pending", "held", "succeeded", "failed", "skipped", "cancelled"]

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def hot_record(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True, slots=True)` for records built on the ingest hot path.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`, a call
    per field: 2.3 µs for a `Delivery` against 0.6 µs without, and ingest builds one per
    delivery plus its `Event`. So the runtime class is a plain slotted dataclass (hashable
    like a frozen one), and immutability is enforced where it matters, by the type checker:
    mypy reads this decorator as frozen and rejects any assignment to a field.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt of a delivery, as recorded in the delivery log."""

    at: float  # epoch seconds when the request started
    status_code: int | None  # None when no response arrived (timeout, refused, guard)
    latency_ms: float
    error: str | None  # human sentence; None on a 2xx
    response_excerpt: str | None  # first 1 KiB of the response body, decoded leniently
    retry_after: float | None = None  # seconds the receiver asked for (429/503 Retry-After)
    # What was sent and what came back, for the delivery log (None/empty: not recorded,
    # e.g. an attempt refused before sending, or one stored by an older version).
    request_method: str | None = None
    request_url: str | None = None
    request_headers: tuple[tuple[str, str], ...] = ()  # secrets replaced by "…"
    request_body: str | None = None  # first 4 KiB, decoded leniently
    response_headers: tuple[tuple[str, str], ...] = ()
    # When the delivery's rate limit granted this attempt its slot (epoch seconds, the time
    # the shared bucket was charged at); None when it has no rate limit. The limit binds
    # these times: a receiver's arrival times also carry each request's transit.
    rate_slot_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Attempt:
        """An attempt from its JSON form (worker wire, Redis), where header pairs arrive as
        lists; keys an older version did not write take their defaults."""
        values = dict(data)
        for key in ("request_headers", "response_headers"):
            pairs = values.get(key)
            if pairs is not None:
                values[key] = tuple((str(k), str(v)) for k, v in pairs)
        return cls(**values)


SECRET_HEADERS = frozenset({"webhook-signature", "x-webhook-signature", "authorization"})
REDACTED = "…"


def redact_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """`headers` with the values of signature and credential headers replaced by "…": the
    attempt log is read by operators, and a signature or token is a secret's stand-in."""
    return tuple((k, REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers)


def delivery_host(url: str) -> str:
    """The bulkhead key of a delivery: its URL's authority (host and port), lowercased.

    The dispatcher queues per this key and the stores skip full hosts by it, so both must
    compute it the same way; a store that persists it computes it at insert.
    """
    rest = url.partition("://")[2]
    end = len(rest)
    for sep in "/?#":
        found = rest.find(sep)
        if found != -1 and found < end:
            end = found
    return rest[:end].lower()


@dataclass(frozen=True, slots=True)
class Lease:
    """A holder's claim on deliveries: until when, and the token that fences its writes.

    Every claim (and every inline commit) gets a fresh token, so a holder whose lease ran
    out and was claimed by another process cannot record an attempt, renew or release:
    the store compares the row's token in the same transaction as the write.
    """

    token: str
    until: float

    @classmethod
    def new(cls, until: float) -> Lease:
        return cls(secrets.token_hex(8), until)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A delivery's share of a rate limit: which bucket, and its rate and burst.

    Deliveries with the same `key` share one bucket in the store, across every worker and
    gateway: `target:<id>` for a webhook target, `rule:<rule id>:<action index>` for a
    rule action.
    """

    key: str
    rate: float  # deliveries per second
    burst: int  # deliveries sent back to back before `rate` applies

    def to_list(self) -> list[Any]:
        """The stored form (a JSON array), read back by `from_list`."""
        return [self.key, self.rate, self.burst]

    @classmethod
    def from_list(cls, value: Any) -> RateLimit | None:
        if not value:
            return None
        if isinstance(value, Mapping):  # the worker wire sends dataclasses as objects
            return cls(str(value["key"]), float(value["rate"]), int(value["burst"]))
        key, rate, burst = value
        return cls(str(key), float(rate), int(burst))


def target_rate_key(target_id: str) -> str:
    return f"target:{target_id}"


def rule_rate_key(rule_id: str, action_index: int) -> str:
    return f"rule:{rule_id}:{action_index}"


@hot_record
class Delivery:
    """One (match, action) to send; the row the dispatcher claims, sends and reschedules.

    Everything needed to send is snapshotted here at ingest, so editing or deleting a rule
    later does not change what an already-accepted event triggers.
    """

    id: str  # "dlv_" + sortable id; also the Standard Webhooks `webhook-id`
    event_id: str
    action_type: str  # registry name: "webhook", "forward", ...
    url: str
    status: DeliveryStatus = "pending"
    rule_id: str | None = None
    target_id: str | None = None
    body: bytes | None = None  # pre-rendered template body; None: built from the event
    retry: tuple[float, ...] = ()  # delays (s) before each retry after a failure
    secret_env: str | None = None  # rule actions: env var holding the signing secret
    timeout_seconds: float | None = None  # None: the dispatcher's default
    disable_after: int | None = None  # consecutive failed deliveries that disable a target
    headers: tuple[tuple[str, str], ...] = ()  # extra request headers set by the rule
    # Rule actions: the action's rate limit, snapshotted; webhook targets keep theirs on the
    # target record, read when sending (a PATCH applies to what is queued).
    rate_limit: RateLimit | None = None
    created_at: float = 0.0
    next_attempt_at: float | None = None
    attempt_count: int = 0
    attempts: tuple[Attempt, ...] = field(default=())
    # FIFO ordering (`ordering = "fifo"` on the action): deliveries with one key are sent
    # one at a time in accept order; None: no ordering (the common case, never slowed).
    ordering_key: str | None = None
