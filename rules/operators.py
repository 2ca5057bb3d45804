"""The JSON-Logic operators hookgate adds to the standard set, registered in one place.

Each entry says what it does, how many arguments it takes, which literal arguments can be
checked at load time, and gives examples (the docs and the tests both use them). The
functions receive their already-evaluated arguments and an `OperatorContext` (the `Logic`
instance), so that caches, the clock and the default phone region live on that instance and
never in this module.

These run as datalogic custom operators, which cost a JSON round trip per call (about a
microsecond): cheap, but keep them out of conditions that could be written with core operators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

import phonenumbers

from rules.regex import Pattern, PatternError, compile_pattern


class OperatorContext(Protocol):
    """What an operator may use from the `Logic` that runs it."""

    @property
    def default_region(self) -> str: ...

    def now(self) -> datetime: ...

    def pattern(self, source: str) -> Pattern: ...


@dataclass(frozen=True, slots=True)
class Example:
    """One documented (and tested) use: `logic` applied to `data` gives `result`."""

    logic: Any
    data: Any
    result: Any


@dataclass(frozen=True, slots=True)
class Operator:
    """An extra operator: its contract, its docs and its implementation."""

    name: str
    signature: str
    summary: str
    min_args: int
    max_args: int
    function: Callable[[OperatorContext, list[Any]], Any]
    examples: tuple[Example, ...]
    # Static checks of literal arguments at load time: (argument index, message) per problem.
    check_literals: Callable[[list[Any]], list[tuple[int, str]]] | None = None


def _text(value: Any) -> str | None:
    """A string argument as text; integers count (a phone or zip code sent as a number)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _regex_match(ctx: OperatorContext, args: list[Any]) -> bool:
    pattern = args[0] if args else None
    if not isinstance(pattern, str):
        raise ValueError("regex_match: the pattern must be a string")
    value = _text(args[1]) if len(args) > 1 else None
    if value is None:
        return False
    return ctx.pattern(pattern).search(value) is not None


def _check_regex(args: list[Any]) -> list[tuple[int, str]]:
    if not args or isinstance(args[0], dict):
        return []
    if not isinstance(args[0], str):
        return [(0, "regex_match: the pattern must be a string")]
    try:
        compile_pattern(args[0])
    except PatternError as exc:
        return [(0, f"regex_match: {exc}")]
    return []


def _e164(ctx: OperatorContext, args: list[Any]) -> str | None:
    value = _text(args[0]) if args else None
    region = args[1] if len(args) > 1 and args[1] is not None else ctx.default_region
    if not value or not isinstance(region, str):
        return None
    try:
        number = phonenumbers.parse(value, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def region_problem(region: Any) -> str | None:
    """Why `region` is not a phone region phonenumbers knows, or None if it is."""
    if isinstance(region, str) and region.upper() in phonenumbers.SUPPORTED_REGIONS:
        return None
    return f'unknown phone region {region!r}; use an ISO 3166 alpha-2 code such as "US" or "GB"'


def _check_e164(args: list[Any]) -> list[tuple[int, str]]:
    if len(args) < 2 or isinstance(args[1], dict) or args[1] is None:
        return []
    problem = region_problem(args[1])
    return [(1, f"e164: {problem}")] if problem else []


def _lower(ctx: OperatorContext, args: list[Any]) -> str | None:
    value = args[0] if args else None
    return value.lower() if isinstance(value, str) else None


def _upper(ctx: OperatorContext, args: list[Any]) -> str | None:
    value = args[0] if args else None
    return value.upper() if isinstance(value, str) else None


def rfc3339(moment: datetime) -> str:
    """`moment` as RFC 3339 UTC with second precision (`2026-11-23T10:00:00Z`); naive is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(ctx: OperatorContext, args: list[Any]) -> str:
    return rfc3339(ctx.now())


_ALL = (
    Operator(
        name="regex_match",
        signature="regex_match(pattern, value)",
        summary=(
            "True if the RE2 regular expression `pattern` matches anywhere in `value` "
            "(anchor with ^ and $ for a whole-string match; (?i) for case-insensitive). "
            "RE2 runs in time linear in the value; it has no backreferences or lookaround. "
            "An integer value is matched as its digits; any other non-string is false."
        ),
        min_args=2,
        max_args=2,
        function=_regex_match,
        check_literals=_check_regex,
        examples=(
            Example(
                {"regex_match": ["^job_", {"var": "event_type"}]}, {"event_type": "job_done"}, True
            ),
            Example(
                {"regex_match": ["(?i)urgent", {"var": "subject"}]}, {"subject": "URGENT!"}, True
            ),
            Example({"regex_match": ["^\\d{5}$", {"var": "zip"}]}, {"zip": "9021"}, False),
            Example({"regex_match": ["x", {"var": "missing"}]}, {}, False),
        ),
    ),
    Operator(
        name="e164",
        signature="e164(phone, region?)",
        summary=(
            "The phone number normalised to E.164 (`+<digits>`), or null when it is not a "
            "valid number. National numbers are read in `region` (ISO 3166 code), by default "
            "the gateway's default region (US)."
        ),
        min_args=1,
        max_args=2,
        function=_e164,
        check_literals=_check_e164,
        examples=(
            Example({"e164": {"var": "phone"}}, {"phone": "(415) 555-2671"}, "+14155552671"),
            Example(
                {"e164": [{"var": "phone"}, "GB"]}, {"phone": "020 7946 0018"}, "+442079460018"
            ),
            Example({"e164": {"var": "phone"}}, {"phone": "+44 20 7946 0018"}, "+442079460018"),
            Example({"e164": {"var": "phone"}}, {"phone": "12345"}, None),
        ),
    ),
    Operator(
        name="lower",
        signature="lower(text)",
        summary="The string in lower case; null for anything that is not a string.",
        min_args=1,
        max_args=1,
        function=_lower,
        examples=(
            Example({"lower": {"var": "email"}}, {"email": "Ada@Example.COM"}, "ada@example.com"),
            Example({"lower": {"var": "email"}}, {}, None),
        ),
    ),
    Operator(
        name="upper",
        signature="upper(text)",
        summary="The string in upper case; null for anything that is not a string.",
        min_args=1,
        max_args=1,
        function=_upper,
        examples=(Example({"upper": {"var": "country"}}, {"country": "us"}, "US"),),
    ),
    Operator(
        name="now",
        signature="now()",
        summary=(
            "The current time as an RFC 3339 UTC string with second precision, "
            "e.g. `2026-11-23T10:00:00Z` (strings in this form compare in time order)."
        ),
        min_args=0,
        max_args=0,
        function=_now,
        examples=(Example({"now": []}, {}, "2026-11-23T10:00:00Z"),),
    ),
)

OPERATORS: Mapping[str, Operator] = MappingProxyType({op.name: op for op in _ALL})
"""Every extra operator by name, in documentation order (read-only)."""
