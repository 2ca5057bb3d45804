"""Turn an event's matches into delivery rows, at ingest, inside the event's transaction.

Everything needed to send is snapshotted into the row (URL, rendered body, retry delays,
secret reference), so a later edit of the rule does not change what this event triggers.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from actions.event import EventInfo
from actions.ids import delivery_id
from actions.model import Attempt, Delivery, RateLimit, rule_rate_key
from actions.registry import ACTION_TYPES
from actions.retry import parse_retry
from actions.signing import Signer
from rules import Action as RuleAction
from rules import EventData, HookgateError, Match, Template, default_burst

MAX_ORDERING_KEY = 200  # characters of a rendered key; a longer one is kept as its hash


def retry_delays(action: RuleAction) -> tuple[float, ...]:
    return _delays(action.type, action.retry)


@functools.lru_cache(maxsize=4096)
def _delays(action_type: str, retry: str | tuple[float, ...] | None) -> tuple[float, ...]:
    """Retry delays by (type, spelling): parsed once, not once per event (hot path)."""
    if retry is None:
        retry = ACTION_TYPES[action_type].default_retry
    return parse_retry(retry).delays


@functools.lru_cache(maxsize=4096)
def _rate_limit(rule_id: str, index: int, rate: float, burst: int | None) -> RateLimit:
    """One shared record per rate-limited action, not one per event (hot path)."""
    return RateLimit(rule_rate_key(rule_id, index), rate, burst or default_burst(rate))


@functools.lru_cache(maxsize=4096)
def _constant_body(template: Template) -> bytes:
    """A template without expressions renders the same bytes for every event."""
    return orjson.dumps(template.render(None))


def ordering_key(scope: str, action: RuleAction, data: EventData | None) -> str | None:
    """The FIFO key of one delivery of `action` (`scope` is "<rule id>#<action index>"):
    None when the action is unordered; the scope alone without `ordering_key`; else the
    scope, "|" and the key's value as canonical JSON (so `"42"` and `42` differ).

    A key that is missing on the event (null), or that fails to evaluate, is `null`: those
    deliveries share one key of their own rather than going unordered. A rendered key past
    `MAX_ORDERING_KEY` characters is replaced by its SHA-256, so the store indexes a short
    string whatever the event holds.
    """
    if action.ordering is None:
        return None
    expression = action.ordering_key
    if expression is None:
        return scope
    try:
        value = expression.evaluate(data)
    except HookgateError:
        value = None
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = "null"
    key = f"{scope}|{text}"
    if len(key) > MAX_ORDERING_KEY:
        key = f"{scope}|sha256:{hashlib.sha256(text.encode()).hexdigest()}"
    return key


def _render(template: Template, event_data: EventData | None) -> tuple[bytes | None, str | None]:
    """A body template rendered on the event (`event_data`; None for a constant template),
    or the error that becomes a failed delivery."""
    try:
        if template.is_constant:
            return _constant_body(template), None
        return orjson.dumps(template.render(event_data)), None
    except (HookgateError, TypeError, orjson.JSONEncodeError) as exc:
        return None, f"template error: {exc}"


def plan_deliveries(
    matches: Sequence[Match], event_id: str, payload: Any, now: float, data: Any = None
) -> list[Delivery]:
    """One pending delivery per (match, action), due now, or `action.delay` from now
    (a delayed delivery is an ordinary pending row whose first attempt lies ahead, so it
    survives restarts and is claimed by whichever process polls when it is due).

    A template that fails on this event becomes a `failed` delivery with the error as its
    attempt, so the operator sees it in the delivery log instead of losing it.
    """
    deliveries: list[Delivery] = []
    event_data = data
    for match in matches:
        rule = match.rule
        for index, action in enumerate(rule.actions):
            body: bytes | None = None
            failure: str | None = None
            if action.body is not None:
                if event_data is None and not action.body.is_constant:
                    event_data = EventData(payload)
                body, failure = _render(action.body, event_data)
            key = None
            if action.ordering is not None:
                if event_data is None and action.ordering_key is not None:
                    event_data = EventData(payload)
                key = ordering_key(f"{rule.id}#{index}", action, event_data)
            delivery = Delivery(
                id=delivery_id(now),
                event_id=event_id,
                action_type=action.type,
                url=action.url,
                rule_id=None if rule.target_id else rule.id,
                target_id=rule.target_id,
                body=body,
                retry=_delays(action.type, action.retry),
                secret_env=action.secret_env,
                timeout_seconds=action.timeout_seconds,
                disable_after=action.disable_after,
                headers=action.headers,
                rate_limit=None
                if action.rate is None
                else _rate_limit(rule.id, index, action.rate, action.burst),
                created_at=now,
                next_attempt_at=now if action.delay is None else now + action.delay,
                ordering_key=key,
            )
            if failure is not None:  # rare: a template that failed on this event
                delivery = dataclasses.replace(
                    delivery,
                    status="failed",
                    next_attempt_at=None,
                    attempt_count=1,
                    attempts=(Attempt(now, None, 0.0, failure, None),),
                )
            deliveries.append(delivery)
    return deliveries


def preview_requests(
    matches: Sequence[Match],
    event: EventInfo,
    payload: Any,
    *,
    now: float,
    secret_for: Callable[[Delivery], str | None],
    user_agent: str = "hookgate",
) -> list[dict[str, Any]]:
    """The requests the matches would send for this event, rendered and signed but not sent
    (for `hookgate rules test` and `POST /v1/rules/test`)."""
    out: list[dict[str, Any]] = []
    for delivery in plan_deliveries(matches, event.id, payload, now):
        item: dict[str, Any] = {
            "rule_id": delivery.rule_id,
            "target_id": delivery.target_id,
            "action_type": delivery.action_type,
            "method": "POST",
            "url": delivery.url,
            "retry": list(delivery.retry),
        }
        if delivery.status == "failed":
            item["error"] = delivery.attempts[0].error if delivery.attempts else "not sendable"
            out.append(item)
            continue
        body = ACTION_TYPES[delivery.action_type].body(delivery, event)
        headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        headers.update(dict(delivery.headers))
        secret = secret_for(delivery)
        if secret:
            headers.update(Signer(secret).headers(delivery.id, int(now), body))
        item["headers"] = headers
        try:
            item["body"] = orjson.loads(body)
        except orjson.JSONDecodeError:
            item["body"] = body.decode("utf-8", "replace")
        out.append(item)
    return out
