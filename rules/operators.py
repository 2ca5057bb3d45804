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

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


def _number(value: Any) -> float | int | None:
    """A numeric argument: a JSON number, or a string holding one (amounts often arrive as
    text); None for anything else, NaN and infinities included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _decimals_problem(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 20:
        return None
    return f"format_number: decimals must be an integer from 0 to 20, got {value!r}"


def _separator_problem(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 3 and not any(c.isdigit() for c in value):
        return None
    return (
        "format_number: the thousands separator must be a string of 0 to 3 non-digits, "
        f"got {value!r}"
    )


def _format_number(ctx: OperatorContext, args: list[Any]) -> str | None:
    number = _number(args[0]) if args else None
    decimals = args[1] if len(args) > 1 and args[1] is not None else 0
    separator = args[2] if len(args) > 2 and args[2] is not None else ","
    if number is None:
        return None
    problem = _decimals_problem(decimals) or _separator_problem(separator)
    if problem:
        raise ValueError(problem)
    text = f"{number:,.{decimals}f}"
    if separator == ",":
        return text
    # Swap "," and "." at once when the separator is ".", so 1.234,50 reads as written.
    decimal_point = "," if separator == "." else "."
    return text.translate(str.maketrans({",": separator, ".": decimal_point}))


def _check_format_number(args: list[Any]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if len(args) > 1 and not isinstance(args[1], dict) and args[1] is not None:
        problem = _decimals_problem(args[1])
        if problem:
            out.append((1, problem))
    if len(args) > 2 and not isinstance(args[2], dict) and args[2] is not None:
        problem = _separator_problem(args[2])
        if problem:
            out.append((2, problem))
    return out


# strftime directives that mean the same on every platform (C99 and ISO 8601 week fields);
# anything else is refused at load rather than printed differently per libc.
_DIRECTIVES = frozenset("aAbBcdHIjmMpSUwWxXyYzZGuV%")
_DIRECTIVE = re.compile(r"%(.?)", re.S)


def pattern_problem(pattern: Any) -> str | None:
    """Why `pattern` is not a strftime pattern `format_time` accepts, or None."""
    if not isinstance(pattern, str) or not pattern:
        return f"format_time: the pattern must be a non-empty string, got {pattern!r}"
    for found in _DIRECTIVE.finditer(pattern):
        letter = found.group(1)
        if letter not in _DIRECTIVES or letter == "":
            shown = "%" + letter if letter else "a trailing %"
            return (
                f"format_time: {shown!r} is not a strftime directive in {pattern!r}; use "
                "%Y %m %d %H %M %S %a %A %b %B %p %I %j %z %Z %G %V %u %w %U %W %c %x %X or %%"
            )
    return None


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_problem(name: Any) -> str | None:
    """Why `name` is not an IANA time zone zoneinfo knows (e.g. "Europe/Paris"), or None."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        return f'format_time: unknown time zone {name!r}; use an IANA name such as "Europe/Paris"'
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f'format_time: unknown time zone {name!r}; use an IANA name such as "Europe/Paris"'
    return None


def _moment(value: Any) -> datetime | None:
    """An RFC 3339 / ISO 8601 string or a Unix timestamp (seconds) as an aware datetime."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    number = _number(value)
    if number is None:
        return None
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _format_time(ctx: OperatorContext, args: list[Any]) -> str | None:
    moment = _moment(args[0]) if args else None
    pattern = args[1] if len(args) > 1 else None
    zone = args[2] if len(args) > 2 and args[2] is not None else "UTC"
    problem = pattern_problem(pattern) or zone_problem(zone)
    if problem:
        raise ValueError(problem)
    if moment is None:
        return None
    assert isinstance(pattern, str) and isinstance(zone, str)
    return moment.astimezone(_zone(zone)).strftime(pattern)


def _check_format_time(args: list[Any]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if len(args) > 1 and not isinstance(args[1], dict):
        problem = pattern_problem(args[1])
        if problem:
            out.append((1, problem))
    if len(args) > 2 and not isinstance(args[2], dict) and args[2] is not None:
        problem = zone_problem(args[2])
        if problem:
            out.append((2, problem))
    return out


def _default(ctx: OperatorContext, args: list[Any]) -> Any:
    value = args[0] if args else None
    fallback = args[1] if len(args) > 1 else None
    return fallback if value is None or value == "" else value


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
    Operator(
        name="format_number",
        signature="format_number(number, decimals?, separator?)",
        summary=(
            "The number as text rounded to `decimals` places (default 0) with `separator` "
            'between thousands (default ","; "." makes the decimal point a comma, "" none). '
            "A numeric string counts; anything else gives null."
        ),
        min_args=1,
        max_args=3,
        function=_format_number,
        check_literals=_check_format_number,
        examples=(
            Example(
                {"format_number": [{"var": "total"}, 2]}, {"total": 1234567.891}, "1,234,567.89"
            ),
            Example({"format_number": [{"var": "total"}, 2, "."]}, {"total": 1234.5}, "1.234,50"),
            Example({"format_number": [{"var": "total"}, 0, " "]}, {"total": "98765"}, "98 765"),
            Example({"format_number": {"var": "total"}}, {}, None),
        ),
    ),
    Operator(
        name="format_time",
        signature="format_time(time, pattern, zone?)",
        summary=(
            "The time (an RFC 3339 string or Unix seconds) written with the strftime `pattern` "
            'in the IANA time zone `zone` (default "UTC"); null when the time is missing or '
            "unreadable. A literal pattern and zone are checked when the rules load."
        ),
        min_args=2,
        max_args=3,
        function=_format_time,
        check_literals=_check_format_time,
        examples=(
            Example(
                {"format_time": [{"var": "at"}, "%d/%m/%Y %H:%M", "Europe/Paris"]},
                {"at": "2026-11-23T10:00:00Z"},
                "23/11/2026 11:00",
            ),
            Example(
                {"format_time": [{"var": "at"}, "%A %I:%M %p", "America/New_York"]},
                {"at": 1795428000},
                "Monday 05:00 AM",
            ),
            Example({"format_time": [{"var": "at"}, "%Y-%m-%d"]}, {}, None),
        ),
    ),
    Operator(
        name="default",
        signature="default(value, fallback)",
        summary="`value`, or `fallback` when it is null, missing or the empty string.",
        min_args=2,
        max_args=2,
        function=_default,
        examples=(
            Example({"default": [{"var": "name"}, "there"]}, {}, "there"),
            Example({"default": [{"var": "name"}, "there"]}, {"name": ""}, "there"),
            Example({"default": [{"var": "name"}, "there"]}, {"name": "Ada"}, "Ada"),
            Example({"default": [{"var": "count"}, 1]}, {"count": 0}, 0),
        ),
    ),
)

OPERATORS: Mapping[str, Operator] = MappingProxyType({op.name: op for op in _ALL})
"""Every extra operator by name, in documentation order (read-only)."""
