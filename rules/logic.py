"""The JSON-Logic evaluator: datalogic-py with standard semantics and hookgate's extra operators.

`Logic` owns one datalogic engine restricted to the JsonLogic core (`families=[]`) plus the
extras of `rules.operators`. It compiles once at load time and evaluates against one
pre-parsed `EventData` per event, which is what makes matching thousands of rules cheap.
All `datalogic_py` errors are translated here, and only here, into `LogicError` (bad
expression) and `EvaluationError` (failure while evaluating).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import datalogic_py
import orjson

from rules.errors import EvaluationError, LogicError, Problem
from rules.operators import OPERATORS, Operator, OperatorContext, region_problem
from rules.regex import Pattern, compile_pattern
from rules.truthiness import NON_OBJECT_CORE_OPERATORS, TruthinessRewriter

__all__ = ["Condition", "EventData", "Expression", "Logic", "compile", "evaluate"]


def _engine_input(value: Any) -> Any:
    """datalogic reads a top-level `str` as JSON text; a JSON string literal must be quoted."""
    return orjson.dumps(value).decode() if isinstance(value, str) else value


def canonical_json(value: Any) -> str:
    """Stable text of a JSON value (sorted keys), used for equality, hashing and versions."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=repr).decode()


@dataclass(frozen=True, slots=True)
class EventData:
    """One event, parsed once into a datalogic handle and shared by every rule and template.

    Building the handle costs about half a microsecond for a small event; evaluating a
    compiled rule against it then costs a fraction of that, with no conversion per rule.
    """

    value: Any
    handle: datalogic_py.DataHandle = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            handle = datalogic_py.DataHandle(_engine_input(self.value))
        except datalogic_py.DataLogicError as exc:
            raise EvaluationError(f"event is not JSON data: {exc}") from exc
        object.__setattr__(self, "handle", handle)

    @classmethod
    def of(cls, data: EventData | Any) -> EventData:
        """`data` itself if it is already an `EventData`, else a new one wrapping it."""
        return data if isinstance(data, EventData) else cls(data)


def _evaluation_error(exc: datalogic_py.DataLogicError) -> EvaluationError:
    return EvaluationError(str(exc), getattr(exc, "operator", None))


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: call it on an event (dict or `EventData`) to get a bool.

    Truthiness is standard JsonLogic (`{}` is truthy, `[]`, `0`, `""` and null are not).
    Equal when their source logic is equal.
    """

    logic: Any = field(compare=False)
    key: str = field(repr=False)
    compiled: datalogic_py.Rule = field(repr=False, compare=False)
    owner: Logic = field(repr=False, compare=False)

    def __call__(self, data: EventData | Any) -> bool:
        return self.test(EventData.of(data), self.owner.session())

    def test(self, data: EventData, session: datalogic_py.Session) -> bool:
        """Evaluate in an open session of `owner` (the hot path: no allocation of our own)."""
        try:
            return session.evaluate_truthy(self.compiled, data.handle)
        except datalogic_py.DataLogicError as exc:
            raise _evaluation_error(exc) from exc


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression returning a JSON value (used by templates and `evaluate`)."""

    logic: Any = field(compare=False)
    key: str = field(repr=False)
    compiled: datalogic_py.Rule = field(repr=False, compare=False)
    owner: Logic = field(repr=False, compare=False)

    def evaluate(self, data: EventData | Any) -> Any:
        """The value of the expression for `data` (any JSON value, or an `EventData`)."""
        try:
            if isinstance(data, EventData):
                return self.compiled.evaluate_data(data.handle)
            return self.compiled.evaluate(_engine_input(data))
        except datalogic_py.DataLogicError as exc:
            raise _evaluation_error(exc) from exc

    def evaluate_in(self, session: datalogic_py.Session, data: EventData) -> Any:
        """Evaluate in an open session of `owner` (the hot path of template rendering)."""
        try:
            return session.evaluate_data(self.compiled, data.handle)
        except datalogic_py.DataLogicError as exc:
            raise _evaluation_error(exc) from exc


def json_problems(value: Any, pointer: str = "") -> list[Problem]:
    """Every value in `value` that JSON cannot carry (TOML dates and times, NaN, infinities)."""
    out: list[Problem] = []
    _json_problems(value, pointer, out)
    return out


def _json_problems(value: Any, pointer: str, out: list[Problem]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                out.append(Problem(pointer, f"object key {key!r} is not a string"))
            else:
                _json_problems(item, f"{pointer}/{escape_pointer(key)}", out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_problems(item, f"{pointer}/{i}", out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            out.append(Problem(pointer, f"{value} is not a JSON number"))
    elif value is not None and not isinstance(value, str | int | bool):
        kind = type(value).__name__
        out.append(
            Problem(pointer, f"a {kind} is not a JSON value (write dates and times as strings)")
        )


def escape_pointer(token: str) -> str:
    """One RFC 6901 reference token."""
    return token.replace("~", "~0").replace("/", "~1")


class _OperatorState:
    """What the extra operators use: default region, clock, regex cache.

    Kept apart from `Logic` so that the engine's callbacks do not point back at the `Logic`
    that owns the engine (no reference cycle through the native extension).
    """

    __slots__ = ("_cache_size", "_clock", "_patterns", "default_region")

    def __init__(self, default_region: str, clock: Callable[[], datetime], cache_size: int) -> None:
        self.default_region = default_region
        self._clock = clock
        self._patterns: dict[str, Pattern] = {}
        self._cache_size = cache_size

    def now(self) -> datetime:
        return self._clock()

    def pattern(self, source: str) -> Pattern:
        compiled = self._patterns.get(source)
        if compiled is None:
            compiled = compile_pattern(source)
            if len(self._patterns) >= self._cache_size:
                self._patterns.clear()
            self._patterns[source] = compiled
        return compiled

    def bind(self, op: Operator) -> Callable[[str], str]:
        """`op` as a datalogic custom operator: JSON array of arguments in, JSON out."""
        function = op.function
        context: OperatorContext = self

        def call(args_json: str) -> str:
            return orjson.dumps(function(context, orjson.loads(args_json))).decode()

        return call


class Logic:
    """A JSON-Logic evaluator: one datalogic engine, the extra operators, and their state.

    Build one per application (tests build as many as they like) and share it: compiling and
    evaluating are thread-safe. Sessions (`session()`) are not: open one per thread or call.
    """

    __slots__ = ("_engine", "_operator_names", "_rewriter", "_state")

    def __init__(
        self,
        default_region: str = "US",
        *,
        clock: Callable[[], datetime] | None = None,
        pattern_cache_size: int = 256,
    ) -> None:
        problem = region_problem(default_region)
        if problem:
            raise ValueError(f"default_region: {problem}")
        self._state = _OperatorState(
            default_region.upper(),
            clock or functools.partial(datetime.now, UTC),
            pattern_cache_size,
        )
        self._engine = datalogic_py.Engine(
            families=[],
            custom_operators={name: self._state.bind(op) for name, op in OPERATORS.items()},
        )
        core = set()
        for info in self._engine.operators():
            core.add(info["name"])
            core.update(info["aliases"])
        self._operator_names = frozenset(core | set(OPERATORS))
        self._rewriter = TruthinessRewriter(NON_OBJECT_CORE_OPERATORS | frozenset(OPERATORS))

    # -- OperatorContext -------------------------------------------------------------------

    @property
    def default_region(self) -> str:
        """Region in which `e164` reads national phone numbers."""
        return self._state.default_region

    def now(self) -> datetime:
        """The time `now` reports (injectable through `clock` for tests)."""
        return self._state.now()

    def pattern(self, source: str) -> Pattern:
        """`source` compiled once per `Logic`; the cache is bounded because a pattern may come
        from event data."""
        return self._state.pattern(source)

    # -- compile and evaluate --------------------------------------------------------------

    @property
    def operator_names(self) -> frozenset[str]:
        """Every operator this evaluator knows: the JsonLogic core (and aliases) and extras."""
        return self._operator_names

    def check(self, logic: Any) -> tuple[Problem, ...]:
        """Every problem in `logic` that can be seen before it runs, each with its pointer."""
        problems = json_problems(logic)
        if problems:
            return tuple(problems)
        try:
            diagnostics = self._engine.check(_engine_input(logic))
        except datalogic_py.DataLogicError as exc:
            return (Problem("", str(exc)),)
        problems.extend(
            Problem(d["pointer"], d["message"]) for d in diagnostics if d["severity"] == "error"
        )
        self._check_extras(logic, "", problems)
        return tuple(problems)

    def _check_extras(self, node: Any, pointer: str, out: list[Problem]) -> None:
        """Arity and literal arguments of the extra operators, which the engine cannot see."""
        if isinstance(node, list):
            for i, item in enumerate(node):
                self._check_extras(item, f"{pointer}/{i}", out)
            return
        if not isinstance(node, dict) or len(node) != 1:
            return
        ((name, args),) = node.items()
        here = f"{pointer}/{escape_pointer(name)}"
        items = args if isinstance(args, list) else [args]
        op = OPERATORS.get(name)
        if op is not None:
            count = len(items)
            if not op.min_args <= count <= op.max_args:
                out.append(Problem(pointer, f"`{name}` takes {_arity(op)}, not {count}"))
            for index, message in op.check_literals(items) if op.check_literals else ():
                out.append(Problem(f"{here}/{index}" if isinstance(args, list) else here, message))
        self._check_extras(args, here, out)

    def compile(self, logic: Any) -> Condition:
        """Compile a condition; raises `LogicError` listing every problem (with pointers)."""
        compiled = self._compile(logic, self._rewriter.condition)
        return Condition(logic, canonical_json(logic), compiled, self)

    def expression(self, logic: Any) -> Expression:
        """Compile an expression whose value is wanted; raises `LogicError`."""
        compiled = self._compile(logic, self._rewriter.value)
        return Expression(logic, canonical_json(logic), compiled, self)

    def _compile(self, logic: Any, rewrite: Callable[[Any], Any]) -> datalogic_py.Rule:
        problems = self.check(logic)
        if problems:
            raise LogicError(problems)
        try:
            return self._engine.compile(_engine_input(rewrite(logic)))
        except datalogic_py.DataLogicError as exc:
            raise LogicError([Problem("", str(exc))]) from exc

    def evaluate(self, logic: Any, data: EventData | Any) -> Any:
        """Compile and evaluate `logic` against `data` once (standard JsonLogic semantics)."""
        return self.expression(logic).evaluate(data)

    def session(self) -> datalogic_py.Session:
        """A hot-loop session (about 0.1 µs to open); not thread-safe, so open one per call."""
        return self._engine.session()


def _arity(op: Operator) -> str:
    if op.min_args == op.max_args:
        plural = "" if op.max_args == 1 else "s"
        return f"exactly {op.max_args} argument{plural}"
    return f"{op.min_args} to {op.max_args} arguments"


@functools.cache
def default_logic() -> Logic:
    """The shared evaluator behind module-level `compile` and `evaluate` (built on first use)."""
    return Logic()


def compile(logic: Any) -> Condition:
    """Compile a JSON-Logic condition with the default evaluator."""
    return default_logic().compile(logic)


def evaluate(logic: Any, data: Any) -> Any:
    """Evaluate JSON-Logic against data with the default evaluator (standard semantics)."""
    return default_logic().evaluate(logic, data)
