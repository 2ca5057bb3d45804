"""Dry runs: which rules an event matches and the requests they would send (nothing sent).

Shared by `hookgate rules test` and `POST /v1/rules/test`, so both show the same thing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from actions import Delivery, EventInfo, preview_requests
from gateway.ids import new_id
from gateway.models import WebhookTarget
from gateway.version import __version__
from rules import RuleSet, explain


def secret_lookup(
    targets: Mapping[str, WebhookTarget], env: Mapping[str, str] | None = None
) -> Callable[[Delivery], str | None]:
    """Where a delivery's signing secret comes from: its target, or the rule's env var."""
    environ = os.environ if env is None else env

    def secret_for(delivery: Delivery) -> str | None:
        if delivery.target_id is not None:
            target = targets.get(delivery.target_id)
            return target.secret if target else None
        return environ.get(delivery.secret_env) if delivery.secret_env else None

    return secret_for


def dry_run(
    ruleset: RuleSet,
    app_name: str,
    event: dict[str, Any],
    secret_for: Callable[[Delivery], str | None],
) -> dict[str, Any]:
    now = time.time()
    event_type = ruleset.event_type_of(event)
    matches = ruleset.match(app_name, event, event_type=event_type)
    info = EventInfo(new_id("evt_", now), event_type, app_name, now, orjson.dumps(event))
    return {
        "event_type": event_type,
        "matched_rules": [m.rule.id for m in matches],
        "requests": preview_requests(
            matches,
            info,
            event,
            now=now,
            secret_for=secret_for,
            user_agent=f"hookgate/{__version__}",
        ),
        "rules": [v.content() for v in explain(ruleset, app_name, event, event_type)],
    }
