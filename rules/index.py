"""The rule index: which rules could apply to an (app, event type), and which ones match.

Rules are bucketed at build time by (app, event type), with `None` standing for "every app"
and "every type". A match looks up the candidates of its (app, event type) (the merge of at
most four buckets, cached per pair, in rule order) and evaluates only their conditions, in one
datalogic session against one `EventData`: the cost grows with the candidates, not with the
size of the rule set.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Final

import datalogic_py

from rules.errors import EvaluationError
from rules.logic import Condition, EventData, Logic, default_logic
from rules.model import Match, Rule, version_of

DEFAULT_EVENT_TYPE_FIELDS: Final = ("event_type", "eventType", "event", "type")


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET
"""Default of `RuleSet.match(event_type=...)`: read the type from the event."""

# One candidate: the precomputed match, and the condition to test (None: always matches).
_Candidate = tuple[Match, Condition | None]


class RuleSet:
    """An immutable, indexed set of rules; `match` is safe to call from any thread.

    `evaluations` and `evaluation_errors` count conditions evaluated and conditions that
    failed at runtime (counted as no match); they are statistics, not synchronised.
    """

    __slots__ = (
        "_apps",
        "_buckets",
        "_by_id",
        "_cache",
        "_logic",
        "_on_error",
        "_types",
        "_version",
        "evaluation_errors",
        "evaluations",
        "event_type_fields",
        "rules",
    )

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        event_type_fields: Sequence[str] = DEFAULT_EVENT_TYPE_FIELDS,
        logic: Logic | None = None,
        on_error: Callable[[Rule, EvaluationError], None] | None = None,
    ) -> None:
        """Index `rules` (their order is the match order). A rule with `when` but no
        `condition` is compiled here with `logic`. Raises `ValueError` on duplicate ids
        and `LogicError` on a `when` that does not compile."""
        self._logic = logic or default_logic()
        self._on_error = on_error
        self.event_type_fields = tuple(event_type_fields)
        self.evaluations = 0
        self.evaluation_errors = 0
        self.rules = tuple(self._compiled(rule) for rule in rules)
        self._by_id: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.id in self._by_id:
                raise ValueError(f"duplicate rule id {rule.id!r} ({rule.source})")
            self._by_id[rule.id] = rule
        self._version = version_of(self.rules)
        buckets: dict[tuple[str | None, str | None], list[tuple[int, _Candidate]]] = {}
        for position, rule in enumerate(self.rules):
            if not rule.enabled:
                continue
            candidate = (Match(rule), rule.condition)
            for app in rule.apps or (None,):
                for event_type in rule.event_types or (None,):
                    buckets.setdefault((app, event_type), []).append((position, candidate))
        self._buckets = buckets
        self._apps = frozenset(app for app, _ in buckets if app is not None)
        self._types = frozenset(etype for _, etype in buckets if etype is not None)
        self._cache: dict[tuple[str | None, str | None], tuple[_Candidate, ...]] = {}

    def _compiled(self, rule: Rule) -> Rule:
        if rule.when is None or rule.condition is not None:
            return rule
        return dataclasses.replace(rule, condition=self._logic.compile(rule.when))

    @property
    def version(self) -> str:
        """A stable hash of the rules' content, in order (equal rules: equal version)."""
        return self._version

    @property
    def logic(self) -> Logic:
        """The evaluator used for rules given without a compiled condition."""
        return self._logic

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, if any."""
        return self._by_id.get(rule_id)

    def with_extra(self, rules: Iterable[Rule]) -> RuleSet:
        """A new set: these rules (e.g. from webhook targets) after this set's rules."""
        return RuleSet(
            (*self.rules, *rules),
            event_type_fields=self.event_type_fields,
            logic=self._logic,
            on_error=self._on_error,
        )

    def event_type_of(self, event: Mapping[str, Any]) -> str | None:
        """The first of `event_type_fields` present in `event` with a string value."""
        for name in self.event_type_fields:
            value = event.get(name)
            if isinstance(value, str):
                return value
        return None

    def candidates(self, app_name: str, event_type: str | None) -> tuple[Match, ...]:
        """The enabled rules that apply to this app and type before their conditions."""
        return tuple(match for match, _ in self._candidates(app_name, event_type))

    def _candidates(self, app_name: str, event_type: str | None) -> tuple[_Candidate, ...]:
        # Apps and types no rule names share the wildcard entry, so the cache is bounded by
        # the rule set, whatever the events say.
        app = app_name if app_name in self._apps else None
        etype = event_type if event_type in self._types else None
        key = (app, etype)
        cached = self._cache.get(key)
        if cached is None:
            keys = {(app, etype), (app, None), (None, etype), (None, None)}
            found = chain.from_iterable(self._buckets.get(k, ()) for k in keys)
            cached = tuple(candidate for _, candidate in sorted(found, key=itemgetter(0)))
            self._cache[key] = cached
        return cached

    def match(
        self,
        app_name: str,
        event: Mapping[str, Any],
        *,
        event_type: str | _Unset | None = UNSET,
        data: EventData | None = None,
    ) -> list[Match]:
        """The rules that match `event` sent by app `app_name`, in rule order.

        `event_type` defaults to `event_type_of(event)`; pass None for an event without a
        type (only rules for every type apply). `data` may carry an `EventData` already built
        for `event` (built here otherwise, once, and only if a condition needs it). A
        condition that fails at runtime counts as no match (see `evaluation_errors` and
        `on_error`) and does not stop the others. Only an event that is not JSON data at all
        raises (`EvaluationError`).
        """
        if event_type is UNSET:
            event_type = self.event_type_of(event)
        candidates = self._candidates(app_name, event_type)
        if not candidates:
            return []
        matches: list[Match] = []
        sessions: dict[int, datalogic_py.Session] = {}
        evaluated = 0
        for match, condition in candidates:
            if condition is None:
                matches.append(match)
                continue
            if data is None:
                data = EventData(event)
            owner = condition.owner
            session = sessions.get(id(owner))
            if session is None:
                session = sessions[id(owner)] = owner.session()
            evaluated += 1
            try:
                if session.evaluate_truthy(condition.compiled, data.handle):
                    matches.append(match)
            except datalogic_py.DataLogicError as exc:
                self._failed(match.rule, exc)
        self.evaluations += evaluated
        return matches

    def _failed(self, rule: Rule, exc: datalogic_py.DataLogicError) -> None:
        self.evaluation_errors += 1
        if self._on_error is not None:
            error = EvaluationError(f"{rule.id}: {exc}", getattr(exc, "operator", None))
            self._on_error(rule, error)
