"""Action body templates: JSON in which JSON-Logic expressions are filled in from the event.

A single-key object whose key is a known operator (core or extra) is an expression and is
replaced by its value. Everything else is literal: scalars, arrays (whose items are
templates), and objects with several keys or one unknown key (whose values are templates).
So `{"to": {"var": "phone"}}` renders `{"to": "+1..."}` and `{"note": "hi"}` stays as it is.

datalogic's own templating mode is not used: it reads an unknown single key as an operator
in some positions and sorts the keys of the output, while a webhook body should keep the
order the operator wrote. Walking the tree once at load gives a plan in which every literal
part is prebuilt and only the expressions run per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datalogic_py

from rules.errors import LogicError, Problem
from rules.logic import (
    EventData,
    Expression,
    Logic,
    canonical_json,
    default_logic,
    escape_pointer,
    json_problems,
)

# A compiled part of the template: renders its value from an open session and the event.
_Part = Callable[[datalogic_py.Session, EventData], Any]


class _Constant:
    """Marks a part that renders to a prebuilt value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled body template. Equal when their source JSON is equal.

    The rendered value may share literal parts with the template itself (no copy per event):
    serialise it, do not mutate it.
    """

    source: Any = field(compare=False)
    key: str = field(repr=False)
    expressions: int = field(repr=False, compare=False)
    owner: Logic = field(repr=False, compare=False)
    _plan: _Part | _Constant = field(repr=False, compare=False)

    @classmethod
    def compile(cls, source: Any, *, logic: Logic | None = None) -> Template:
        """Compile `source` once; raises `LogicError` listing every problem with its pointer."""
        owner = logic or default_logic()
        # Values JSON cannot carry are reported once for the whole tree, expressions included.
        problems = json_problems(source)
        expressions: list[Expression] = []
        plan = _plan(source, "", owner, problems, expressions)
        if problems:
            raise LogicError(list(dict.fromkeys(problems)))
        return cls(source, canonical_json(source), len(expressions), owner, plan)

    @property
    def is_constant(self) -> bool:
        """True when the template holds no expression: rendering it costs nothing."""
        return isinstance(self._plan, _Constant)

    def render(self, data: EventData | Any) -> Any:
        """The body for one event (a dict or an `EventData`), as a JSON value.

        Raises `EvaluationError` if an expression fails on this event.
        """
        plan = self._plan
        if isinstance(plan, _Constant):
            return plan.value
        return plan(self.owner.session(), EventData.of(data))

    def render_in(self, session: datalogic_py.Session, data: EventData) -> Any:
        """Like `render`, in an open session of `owner` (to render many bodies per event)."""
        plan = self._plan
        return plan.value if isinstance(plan, _Constant) else plan(session, data)


def _plan(
    node: Any, pointer: str, logic: Logic, problems: list[Problem], found: list[Expression]
) -> _Part | _Constant:
    """The render plan of `node`; problems and compiled expressions are collected on the way."""
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in logic.operator_names:
            return _expression(node, pointer, logic, problems, found)
        keys: list[str] = []
        parts: list[_Part | _Constant] = []
        for key, value in node.items():
            if not isinstance(key, str):
                problems.append(Problem(pointer, f"object key {key!r} is not a string"))
                continue
            keys.append(key)
            parts.append(_plan(value, f"{pointer}/{escape_pointer(key)}", logic, problems, found))
        return _object(node, keys, parts)
    if isinstance(node, list):
        items = [_plan(v, f"{pointer}/{i}", logic, problems, found) for i, v in enumerate(node)]
        return _array(node, items)
    return _Constant(node)


def _expression(
    node: dict[str, Any],
    pointer: str,
    logic: Logic,
    problems: list[Problem],
    found: list[Expression],
) -> _Part | _Constant:
    try:
        expression = logic.expression(node)
    except LogicError as exc:
        problems.extend(Problem(pointer + p.pointer, p.message) for p in exc.problems)
        return _Constant(None)
    found.append(expression)
    return expression.evaluate_in


def _object(
    source: dict[str, Any], keys: list[str], parts: list[_Part | _Constant]
) -> _Part | _Constant:
    if all(isinstance(part, _Constant) for part in parts):
        return _Constant(source)
    plan = tuple(zip(keys, parts, strict=True))

    def render(session: datalogic_py.Session, data: EventData) -> dict[str, Any]:
        return {
            key: part.value if isinstance(part, _Constant) else part(session, data)
            for key, part in plan
        }

    return render


def _array(source: list[Any], parts: list[_Part | _Constant]) -> _Part | _Constant:
    if all(isinstance(part, _Constant) for part in parts):
        return _Constant(source)
    plan = tuple(parts)

    def render(session: datalogic_py.Session, data: EventData) -> list[Any]:
        return [part.value if isinstance(part, _Constant) else part(session, data) for part in plan]

    return render
