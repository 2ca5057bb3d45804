"""Webhook targets (API subscriptions): validation, creation and updates.

A target is stored with its signing secret (needed to sign, so it cannot be hashed) and
enters the matcher as a rule (`rules.Rule.for_target`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from actions import (
    ActionError,
    UnsafeTargetError,
    check_url,
    generate_secret,
    parse_retry,
    secret_problem,
)
from gateway.config import Settings
from gateway.delivery.wiring import address_policy
from gateway.errors import InvalidInput
from gateway.ids import new_id
from gateway.models import (
    DISABLE_AFTER_DEFAULT,
    PROBE_INTERVAL_MAX,
    REENABLE_AFTER_DEFAULT,
    WebhookTarget,
)
from gateway.store import Store
from rules import Logic, LogicError, burst_problem, rate_problem
from rules.durations import parse_duration

FIELDS = (
    "url",
    "events",
    "filter",
    "secret",
    "retry",
    "disable_after",
    "description",
    "rate",
    "burst",
    "reenable_after",
    "ordering",
    "ordering_key",
)
PATCHABLE = (*FIELDS, "status")


async def _url(value: Any, settings: Settings) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("url", "must be an absolute http(s) URL")
    try:
        policy = address_policy(settings)
        await check_url(
            value,
            allow_private=policy.allow_private,
            allowed_networks=policy.allowed_networks,
        )
    except UnsafeTargetError as exc:
        raise InvalidInput("url", f"refused: {exc.reason}") from None
    return value


def _events(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput("events", "must be a list of event type names (empty: all events)")
    return tuple(dict.fromkeys(value))


def _filter(value: Any, logic: Logic) -> Any:
    if value is None:
        return None
    try:
        logic.compile(value)
    except LogicError as exc:
        raise InvalidInput("filter", f"is not a valid JSON-Logic condition: {exc}") from None
    return value


def _secret(value: Any) -> str:
    if value is None:
        return generate_secret()
    if not isinstance(value, str):
        raise InvalidInput("secret", "must be a string like whsec_<base64>")
    problem = secret_problem(value)
    if problem:
        raise InvalidInput("secret", f"{problem}; omit it to have one generated")
    return value


def _retry(value: Any) -> str | tuple[float, ...]:
    if value is None:
        return "standard"
    try:
        policy = parse_retry(value)
    except ActionError as exc:
        raise InvalidInput("retry", str(exc)) from None
    return policy.name if policy.name != "custom" else policy.delays


def _disable_after(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput("disable_after", "must be a positive integer or null (never)")
    return value


def _rate_limit(rate: Any, burst: Any) -> tuple[float | None, int | None]:
    """`rate` (deliveries per second, null: unlimited) and `burst` (null: the default,
    max(1, ceil(rate)), which then follows the rate)."""
    if rate is None:
        if burst is not None:
            raise InvalidInput("burst", "needs a rate; set rate (deliveries per second) too")
        return None, None
    problem = rate_problem(rate)
    if problem:
        raise InvalidInput("rate", problem)
    if burst is not None:
        problem = burst_problem(burst)
        if problem:
            raise InvalidInput("burst", problem)
    return float(rate), burst


def _reenable_after(value: Any) -> float:
    """Seconds before a target disabled after failures is probed: "10m", "90s", seconds."""
    if value is None:
        return REENABLE_AFTER_DEFAULT
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InvalidInput("reenable_after", str(exc)) from None
    if not 1.0 <= seconds <= PROBE_INTERVAL_MAX:
        raise InvalidInput(
            "reenable_after", f"must be between 1s and 6h (the longest wait), got {value!r}"
        )
    return seconds


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 1000:
        raise InvalidInput("description", "must be a string of at most 1000 characters")
    return value


def _ordering(ordering: Any, key: Any, logic: Logic) -> dict[str, Any]:
    """`ordering` and `ordering_key` together (a key means nothing without ordering)."""
    if ordering is not None and ordering != "fifo":
        raise InvalidInput(
            "ordering",
            'must be "fifo" (deliveries with one ordering key are sent one at a time, in the'
            " order their events were accepted) or null (unordered)",
        )
    if key is None:
        return {"ordering": ordering, "ordering_key": None}
    if ordering is None:
        raise InvalidInput("ordering_key", 'only an ordered target has a key; set ordering "fifo"')
    if not isinstance(key, dict):
        raise InvalidInput(
            "ordering_key",
            'must be a JSON-Logic expression evaluated on the event, such as {"var": "customerId"}',
        )
    try:
        logic.expression(key)
    except LogicError as exc:
        raise InvalidInput("ordering_key", f"is not a valid JSON-Logic expression: {exc}") from None
    return {"ordering": ordering, "ordering_key": key}


async def create_target(body: dict[str, Any], settings: Settings, logic: Logic) -> WebhookTarget:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field; known: {', '.join(FIELDS)}")
    now = time.time()
    rate, burst = _rate_limit(body.get("rate"), body.get("burst"))
    return WebhookTarget(
        id=new_id("wht_", now),
        url=await _url(body.get("url"), settings),
        secret=_secret(body.get("secret")),
        events=_events(body.get("events")),
        filter=_filter(body.get("filter"), logic),
        retry=_retry(body.get("retry")),
        disable_after=_disable_after(body.get("disable_after", DISABLE_AFTER_DEFAULT)),
        reenable_after=_reenable_after(body.get("reenable_after")),
        description=_description(body.get("description")),
        created_at=now,
        updated_at=now,
        rate=rate,
        burst=burst,
        **_ordering(body.get("ordering"), body.get("ordering_key"), logic),
    )


async def update_target(
    target: WebhookTarget, body: dict[str, Any], settings: Settings, logic: Logic
) -> WebhookTarget:
    unknown = sorted(set(body) - set(PATCHABLE))
    if unknown:
        raise InvalidInput(unknown[0], f"cannot be changed; changeable: {', '.join(PATCHABLE)}")
    changes: dict[str, Any] = {}
    if "url" in body:
        changes["url"] = await _url(body["url"], settings)
    if "events" in body:
        changes["events"] = _events(body["events"])
    if "filter" in body:
        changes["filter"] = _filter(body["filter"], logic)
    if "secret" in body:
        # A new secret signs every delivery from now on (retries of older ones included);
        # null generates one, as on create.
        changes["secret"] = _secret(body["secret"])
    if "retry" in body:
        changes["retry"] = _retry(body["retry"])
    if "disable_after" in body:
        changes["disable_after"] = _disable_after(body["disable_after"])
    if "reenable_after" in body:
        changes["reenable_after"] = _reenable_after(body["reenable_after"])
    if "description" in body:
        changes["description"] = _description(body["description"])
    if "rate" in body or "burst" in body:
        # A burst left out keeps the target's; a rate set to null drops both.
        rate = body.get("rate", target.rate)
        burst = body.get("burst", target.burst if rate is not None else None)
        changes["rate"], changes["burst"] = _rate_limit(rate, burst)
    if "ordering" in body or "ordering_key" in body:
        # Unordering a target drops its key; a new key alone keeps the ordering it has.
        ordering = body.get("ordering", target.ordering)
        key = body.get("ordering_key", target.ordering_key if ordering is not None else None)
        changes.update(_ordering(ordering, key, logic))
    if "status" in body:
        if body["status"] not in ("active", "disabled"):
            raise InvalidInput("status", "must be 'active' or 'disabled'")
        changes["status"] = body["status"]
        if body["status"] == "active":
            changes["consecutive_failures"] = 0
    return dataclasses.replace(target, **changes, updated_at=time.time())


async def save_update(
    store: Store, before: WebhookTarget, after: WebhookTarget, *, status_given: bool
) -> WebhookTarget:
    """Store an update made by `update_target`. A status it changes goes through
    `Store.set_target_status`, which holds (`disabled`) or releases at once (`active`) the
    target's deliveries in the same write; `status_given`: the API request named a status
    (then `disabled` also stops the probing of a target disabled after failures: disabled
    by hand, it waits for a person). A form that always sends the status passes False."""
    by_hand = status_given and after.status == "disabled" and before.probe_interval is not None
    if after.status == before.status and not by_hand:
        await store.save_target(after)
        return after
    await store.save_target(
        dataclasses.replace(
            after, status=before.status, consecutive_failures=before.consecutive_failures
        )
    )
    updated = await store.set_target_status(after.id, after.status, time.time())
    return updated if updated is not None else after
