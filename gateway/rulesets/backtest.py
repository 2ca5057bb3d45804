"""Rule backtests: how a candidate rule directory would have matched the stored events.

Shared by `hookgate rules backtest` and `POST /v1/rules/backtest`. Nothing is sent and
nothing is written: events are read page by page (newest first, through `list_events`, so
every store backend serves it), matched against the candidate rules, and counted per rule
with up to `SAMPLES` event ids and the body the first of them would have sent.

Hot loop, measured by `python -m bench` (part `backtest`): one `orjson.loads` and one
`RuleSet.match` per event, with an `EventData` built only when a condition needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from actions import EventInfo, preview_requests, rfc3339
from gateway.errors import InvalidInput
from gateway.store import Store
from rules import Match, RuleSet
from rules.durations import parse_duration

SAMPLES = 5
PAGE = 2000


@dataclass(slots=True)
class RuleTally:
    """What one rule would have done over the window."""

    rule_id: str
    matched: int = 0
    sample_event_ids: list[str] = field(default_factory=list)
    sample_body: Any = None

    def content(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "matched": self.matched,
            "sample_event_ids": self.sample_event_ids,
            "sample_body": self.sample_body,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """A backtest's outcome: the window, how many events were read, the tallies."""

    since: float
    until: float | None
    app: str | None
    events: int
    unreadable: int
    seconds: float
    rules: tuple[RuleTally, ...]

    def content(self) -> dict[str, Any]:
        return {
            "since": rfc3339(self.since),
            "until": rfc3339(self.until) if self.until is not None else None,
            "app": self.app,
            "events_scanned": self.events,
            "events_unreadable": self.unreadable,
            "seconds": round(self.seconds, 3),
            "rules": [t.content() for t in self.rules],
        }


def parse_moment(value: Any, field_name: str, now: float) -> float:
    """A point in time as given on the command line or in a request: a duration back from
    `now` (`7d`, `1h`, `90s`) or an RFC 3339 time; `InvalidInput` naming the field."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field_name, "expected a duration such as 7d or 1h, or an RFC 3339 time")
    text = value.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            field_name,
            f"expected a duration such as 7d or 1h, or an RFC 3339 time, got {value!r}",
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(field_name, f"an RFC 3339 time needs an offset (Z or +hh:mm): {value!r}")
    return moment.timestamp()


def _sample_body(match: Match, info: EventInfo, payload: Any) -> Any:
    requests = preview_requests([match], info, payload, now=info.received_at, secret_for=_none)
    if not requests:
        return None
    first = requests[0]
    return first.get("body", {"error": first.get("error")})


def _none(_delivery: Any) -> None:
    return None


async def backtest(
    store: Store,
    ruleset: RuleSet,
    *,
    since: float,
    until: float | None = None,
    app_id: str | None = None,
    page: int = PAGE,
) -> Report:
    """Match every stored event received in [since, until) (of `app_id`, if given)."""
    started = time.perf_counter()
    names = {app.id: app.name for app in await store.list_apps()}
    tallies = {rule.id: RuleTally(rule.id) for rule in ruleset}
    scanned = unreadable = 0
    cursor: str | None = None
    match = ruleset.match
    loads = orjson.loads
    while True:
        found = await store.list_events(app_id=app_id, since=since, cursor=cursor, limit=page)
        for event in found.data:
            if until is not None and event.received_at >= until:
                continue
            scanned += 1
            try:
                payload = loads(event.payload)
            except orjson.JSONDecodeError:
                unreadable += 1
                continue
            if not isinstance(payload, dict):
                unreadable += 1
                continue
            app_name = names.get(event.app_id, event.app_id)
            for m in match(app_name, payload, event_type=event.event_type):
                tally = tallies[m.rule.id]
                tally.matched += 1
                if len(tally.sample_event_ids) < SAMPLES:
                    tally.sample_event_ids.append(event.id)
                    if tally.sample_body is None and len(tally.sample_event_ids) == 1:
                        info = EventInfo(
                            event.id, event.event_type, app_name, event.received_at, event.payload
                        )
                        tally.sample_body = _sample_body(m, info, payload)
        if found.next_cursor is None:
            break
        cursor = found.next_cursor
    return Report(
        since=since,
        until=until,
        app=None if app_id is None else names.get(app_id, app_id),
        events=scanned,
        unreadable=unreadable,
        seconds=time.perf_counter() - started,
        rules=tuple(tallies.values()),
    )
