"""Why each rule did or did not match one event, for dry runs (`rules test`).

`RuleSet.match` is the hot path and says only what matched; this walks every rule once more,
in rule order, and names the first check that failed (apps, event types, `when`) and the
`var` paths of `when` and the action bodies that the event does not have, which is most
often why a condition is false or a body renders nulls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rules.errors import EvaluationError
from rules.index import RuleSet
from rules.logic import EventData
from rules.model import Rule


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule against one event: `reason` is None when it matched."""

    rule_id: str
    target_id: str | None
    matched: bool
    reason: str | None
    missing_vars: tuple[str, ...]

    def content(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "target_id": self.target_id,
            "matched": self.matched,
            "reason": self.reason,
            "missing_vars": list(self.missing_vars),
        }


def var_paths(logic: Any) -> Iterator[str]:
    """Every literal `var` path in a JSON-Logic expression or body template, in order
    (`""`, the whole event, and computed paths are left out)."""
    if isinstance(logic, Mapping):
        for key, value in logic.items():
            if key == "var":
                path = value[0] if isinstance(value, list) and value else value
                if isinstance(path, str) and path:
                    yield path
                elif isinstance(path, int) and not isinstance(path, bool):
                    yield str(path)
                if isinstance(value, list):
                    for item in value[1:]:
                        yield from var_paths(item)
                elif not isinstance(value, str | int):
                    yield from var_paths(value)
            else:
                yield from var_paths(value)
    elif isinstance(logic, list):
        for item in logic:
            yield from var_paths(item)


def has_path(event: Any, path: str) -> bool:
    """Whether the dotted `path` (list items by index) leads somewhere in `event`."""
    value = event
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False
    return True


def missing_vars(rule: Rule, event: Mapping[str, Any]) -> tuple[str, ...]:
    sources = [rule.when, *(a.body.source for a in rule.actions if a.body is not None)]
    seen: dict[str, None] = {}
    for source in sources:
        for path in var_paths(source):
            if not has_path(event, path):
                seen.setdefault(path)
    return tuple(seen)


def _reason(rule: Rule, app_name: str, event_type: str | None, data: EventData) -> str | None:
    if not rule.enabled:
        return "rule is disabled"
    if rule.apps and app_name not in rule.apps:
        return f"app {app_name!r} is not listed in apps ({', '.join(sorted(rule.apps))})"
    if rule.event_types and event_type not in rule.event_types:
        shown = "no event type" if event_type is None else f"event type {event_type!r}"
        listed = ", ".join(sorted(rule.event_types))
        return f"{shown} is not listed in event_types ({listed})"
    if rule.condition is not None:
        try:
            if not rule.condition.test(data, rule.condition.owner.session()):
                return "when was false"
        except EvaluationError as exc:
            return f"when failed: {exc}"
    return None


def explain(
    ruleset: RuleSet, app_name: str, event: Mapping[str, Any], event_type: str | None
) -> list[Verdict]:
    """A verdict for every rule of `ruleset`, in rule order (agrees with `match`)."""
    data = EventData(event)
    out = []
    for rule in ruleset.rules:
        reason = _reason(rule, app_name, event_type, data)
        out.append(
            Verdict(rule.id, rule.target_id, reason is None, reason, missing_vars(rule, event))
        )
    return out
