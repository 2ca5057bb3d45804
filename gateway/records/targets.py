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
from gateway.models import WebhookTarget
from rules import Logic, LogicError

FIELDS = (
    "url",
    "events",
    "filter",
    "secret",
    "retry",
    "disable_after",
    "description",
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
    return WebhookTarget(
        id=new_id("wht_", now),
        url=await _url(body.get("url"), settings),
        secret=_secret(body.get("secret")),
        events=_events(body.get("events")),
        filter=_filter(body.get("filter"), logic),
        retry=_retry(body.get("retry")),
        disable_after=_disable_after(body.get("disable_after", 3)),
        description=_description(body.get("description")),
        created_at=now,
        updated_at=now,
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
    if "description" in body:
        changes["description"] = _description(body["description"])
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
