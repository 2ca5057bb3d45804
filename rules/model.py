"""Rules, their actions, and matches: the records the rest of hookgate reads.

A rule from a file and a webhook target from the admin API are the same record (`Rule`), so
both go through one index and one matcher.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from rules.errors import LogicError, RuleError
from rules.logic import Condition, Expression, Logic, default_logic
from rules.template import Template

TARGET_RULE_PREFIX = "target:"
"""Ids of rules built from webhook targets start with this; file rule ids cannot contain ':'."""


_MISSING = object()


@dataclass(frozen=True, slots=True)
class CancelOn:
    """When a delayed action's deliveries are called off: a later event of one of
    `event_types` from the same app, with the same value at the dotted path `match`."""

    event_types: frozenset[str]
    match: str

    def key(self, payload: Any) -> Any:
        """The value at `match` in `payload`, or None when it is missing (a missing key
        cancels nothing, so two events both lacking it are never paired)."""
        value = payload
        for part in self.match.split("."):
            if isinstance(value, dict):
                value = value.get(part, _MISSING)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
            if value is _MISSING:
                return None
        return value

    def content(self) -> dict[str, Any]:
        return {"event_types": sorted(self.event_types), "match": self.match}


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do when a rule matches; the `actions` package gives `type` its meaning."""

    type: str
    url: str
    secret_env: str | None = None
    # "none", "standard", or the delays in seconds before each retry; None: the action
    # type's own default (standard for webhook, none for forward).
    retry: str | tuple[float, ...] | None = None
    # Compiled body; None: the caller sends the envelope (webhook) or the event (forward).
    body: Template | None = None
    timeout_seconds: float | None = None
    disable_after: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float | None = None  # seconds between the event and the first attempt
    cancel_on: CancelOn | None = None
    rate: float | None = None  # deliveries per second; None: unlimited
    burst: int | None = None  # set whenever `rate` is
    # "fifo": deliveries with one ordering key go one at a time, in accept order (the key
    # is `ordering_key` evaluated on the event, scoped to this action); None: unordered.
    ordering: str | None = None
    ordering_key: Expression | None = None  # None with ordering: one key for the action

    def content(self) -> dict[str, Any]:
        """The action as plain JSON (for versions and the admin API); `delay`, `cancel_on`,
        `rate`, `burst` and `ordering` only when set, so rules without them keep their
        versions."""
        out = self._base_content()
        if self.rate is not None:
            out["rate"] = self.rate
            out["burst"] = self.burst
        if self.delay is not None:
            out["delay"] = self.delay
        if self.cancel_on is not None:
            out["cancel_on"] = self.cancel_on.content()
        if self.ordering is not None:
            out["ordering"] = self.ordering
            if self.ordering_key is not None:
                out["ordering_key"] = self.ordering_key.logic
        return out

    def _base_content(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "url": self.url,
            "secret_env": self.secret_env,
            "retry": self.retry
            if self.retry is None or isinstance(self.retry, str)
            else list(self.retry),
            "body": None if self.body is None else self.body.source,
            "timeout_seconds": self.timeout_seconds,
            "disable_after": self.disable_after,
            "headers": [list(pair) for pair in self.headers],
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: which events it applies to (apps, types, condition) and what it fires."""

    id: str
    description: str = ""
    apps: frozenset[str] = frozenset()  # app names; empty: every app
    event_types: frozenset[str] = frozenset()  # empty: every event type
    when: Any = field(default=None, hash=False)  # raw JSON-Logic; None: always
    enabled: bool = True
    actions: tuple[Action, ...] = ()
    source: str = ""  # file path, or "api:<target id>" for webhook targets
    condition: Condition | None = None  # compiled `when`
    target_id: str | None = None  # set for rules built from webhook targets

    def content(self) -> dict[str, Any]:
        """The rule as plain JSON, without where it came from (for versions and the API)."""
        return {
            "id": self.id,
            "description": self.description,
            "apps": sorted(self.apps),
            "event_types": sorted(self.event_types),
            "when": self.when,
            "enabled": self.enabled,
            "actions": [action.content() for action in self.actions],
            "target_id": self.target_id,
        }

    @classmethod
    def for_target(
        cls,
        target_id: str,
        url: str,
        events: Iterable[str] = (),
        filter: Any = None,
        *,
        logic: Logic | None = None,
        retry: str | tuple[float, ...] = "standard",
        disable_after: int | None = 3,
        timeout_seconds: float | None = None,
        description: str = "",
        enabled: bool = True,
        ordering: str | None = None,
        ordering_key: Any = None,
    ) -> Rule:
        """The rule a webhook target stands for: `event_types = events`, `when = filter`,
        one `webhook` action with no body (the caller sends the envelope).

        The target's signing secret lives in the store, not in the environment, so the
        action has no `secret_env`; the caller finds the secret by `target_id`.
        Raises `RuleError` (file `api:<target_id>`) for a bad URL, event list or filter.
        """
        source = f"api:{target_id}"
        rule_id = f"{TARGET_RULE_PREFIX}{target_id}"
        problem = url_problem(url)
        if problem:
            raise RuleError(source, rule_id, f"url: {problem}")
        event_types = tuple(events)
        if not all(isinstance(event, str) and event for event in event_types):
            raise RuleError(source, rule_id, "events: must be a list of non-empty strings")
        condition = None
        if filter is not None:
            try:
                condition = (logic or default_logic()).compile(filter)
            except LogicError as exc:
                raise RuleError(source, rule_id, f"filter: {exc}") from exc
        key = None
        if ordering_key is not None:
            try:
                key = (logic or default_logic()).expression(ordering_key)
            except LogicError as exc:
                raise RuleError(source, rule_id, f"ordering_key: {exc}") from exc
        action = Action(
            type="webhook",
            url=url,
            retry=retry,
            timeout_seconds=timeout_seconds,
            disable_after=disable_after,
            ordering=ordering,
            ordering_key=key,
        )
        return cls(
            id=rule_id,
            description=description,
            event_types=frozenset(event_types),
            when=filter,
            enabled=enabled,
            actions=(action,),
            source=source,
            condition=condition,
            target_id=target_id,
        )


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched an event (one per rule; the caller fires each of its actions)."""

    rule: Rule


def url_problem(url: Any) -> str | None:
    """Why `url` cannot be an action URL, or None. Syntax only: no DNS (the SSRF guard in
    `actions` checks addresses when the target is created and again when sending)."""
    expected = "an absolute http:// or https:// URL with a host"
    if not isinstance(url, str) or not url:
        return f"must be {expected}, got {url!r}"
    if any(ch.isspace() for ch in url):
        return f"must be {expected} without spaces, got {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"must be {expected}, got {url!r} ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be {expected}, got {url!r}"
    if port == 0:
        return f"port 0 is not a valid port in {url!r}"
    return None


def version_of(rules: Iterable[Rule]) -> str:
    """A stable hash of the rules' content in order (where they came from does not count)."""
    digest = hashlib.sha256()
    for rule in rules:
        digest.update(orjson.dumps(rule.content(), option=orjson.OPT_SORT_KEYS, default=repr))
        digest.update(b"\n")
    return digest.hexdigest()[:16]
