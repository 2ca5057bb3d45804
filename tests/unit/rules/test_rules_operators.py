"""The extra operators: regex_match, e164, lower, upper, now; and their documented examples."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from rules import OPERATORS, Logic, Template

FIXED = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def logic() -> Logic:
    return Logic(clock=lambda: FIXED)


@pytest.mark.parametrize(
    ("name", "index"),
    [(op.name, i) for op in OPERATORS.values() for i in range(len(op.examples))],
)
def test_every_documented_example_holds(logic: Logic, name: str, index: int) -> None:
    example = OPERATORS[name].examples[index]
    assert logic.evaluate(example.logic, example.data) == example.result


def test_registry_lists_the_extras_in_doc_order() -> None:
    assert list(OPERATORS) == [
        *("regex_match", "e164", "lower", "upper", "now"),
        *("format_number", "format_time", "default"),
    ]
    for op in OPERATORS.values():
        assert op.summary and op.examples and op.signature.startswith(op.name)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^job_", "job_completed", True),
        ("completed$", "job_completed", True),
        ("^completed", "job_completed", False),
        ("(?i)^ADA", "ada lovelace", True),
        (r"^\d{5}$", 90210, True),
        (r"^\d{5}$", True, False),
        ("x", None, False),
        ("x", ["x"], False),
    ],
)
def test_regex_match(logic: Logic, pattern: str, value: Any, expected: bool) -> None:
    assert logic.evaluate({"regex_match": [pattern, {"var": "v"}]}, {"v": value}) is expected


def test_regex_patterns_are_cached_per_logic_instance(logic: Logic) -> None:
    other = Logic()
    condition = logic.compile({"regex_match": ["^a+$", {"var": "v"}]})
    assert condition({"v": "aaa"}) and not condition({"v": "b"})
    assert logic.pattern("^a+$") is logic.pattern("^a+$")
    assert "^a+$" in logic._state._patterns
    assert other._state._patterns == {}


def test_regex_cache_is_bounded() -> None:
    logic = Logic(pattern_cache_size=4)
    for i in range(10):
        logic.evaluate({"regex_match": [{"var": "p"}, "x"]}, {"p": f"x{{0,{i}}}"})
    assert len(logic._state._patterns) <= 4


def test_regex_pattern_from_data_that_is_invalid_fails_at_runtime(logic: Logic) -> None:
    from rules import EvaluationError

    with pytest.raises(EvaluationError, match="regex_match"):
        logic.evaluate({"regex_match": [{"var": "p"}, "x"]}, {"p": "("})


@pytest.mark.parametrize(
    ("logic_json", "phone", "expected"),
    [
        ({"e164": {"var": "p"}}, "(415) 555-2671", "+14155552671"),
        ({"e164": {"var": "p"}}, "415.555.2671", "+14155552671"),
        ({"e164": {"var": "p"}}, 4155552671, "+14155552671"),
        ({"e164": {"var": "p"}}, "+44 20 7946 0018", "+442079460018"),
        ({"e164": [{"var": "p"}, "GB"]}, "020 7946 0018", "+442079460018"),
        ({"e164": [{"var": "p"}, "gb"]}, "020 7946 0018", "+442079460018"),
        ({"e164": [{"var": "p"}, "FR"]}, "01 23 45 67 89", "+33123456789"),
        ({"e164": {"var": "p"}}, "020 7946 0018", None),  # not a US number
        ({"e164": {"var": "p"}}, "12345", None),
        ({"e164": {"var": "p"}}, "not a phone", None),
        ({"e164": {"var": "p"}}, "", None),
        ({"e164": {"var": "p"}}, None, None),
        ({"e164": {"var": "p"}}, {"n": 1}, None),
        ({"e164": [{"var": "p"}, {"var": "region"}]}, "020 7946 0018", None),  # region "XX"
    ],
)
def test_e164(logic: Logic, logic_json: Any, phone: Any, expected: str | None) -> None:
    assert logic.evaluate(logic_json, {"p": phone, "region": "XX"}) == expected


def test_e164_default_region_comes_from_the_logic_instance() -> None:
    gb = Logic(default_region="GB")
    assert gb.default_region == "GB"
    assert gb.evaluate({"e164": {"var": "p"}}, {"p": "020 7946 0018"}) == "+442079460018"
    assert Logic().evaluate({"e164": {"var": "p"}}, {"p": "020 7946 0018"}) is None


@pytest.mark.parametrize(
    ("value", "lower", "upper"),
    [("Ada@Example.COM", "ada@example.com", "ADA@EXAMPLE.COM"), ("", "", ""), (3, None, None),
     (None, None, None), ("Straße", "straße", "STRASSE")],
)  # fmt: skip
def test_lower_and_upper(logic: Logic, value: Any, lower: Any, upper: Any) -> None:
    assert logic.evaluate({"lower": {"var": "v"}}, {"v": value}) == lower
    assert logic.evaluate({"upper": [{"var": "v"}]}, {"v": value}) == upper
    assert logic.evaluate({"lower": "ABC"}, None) == "abc"


def test_now_is_rfc3339_utc_to_the_second(logic: Logic) -> None:
    assert logic.evaluate({"now": []}, {}) == "2026-11-23T10:00:00Z"
    plus_two = timezone(timedelta(hours=2))
    shifted = Logic(clock=lambda: datetime(2026, 11, 23, 12, 0, 0, tzinfo=plus_two))
    assert shifted.evaluate({"now": []}, {}) == "2026-11-23T10:00:00Z"


def test_now_with_the_real_clock_has_the_right_shape() -> None:
    value = Logic().evaluate({"now": []}, {})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value)


def test_now_compares_with_event_timestamps(logic: Logic) -> None:
    condition = logic.compile({"<": [{"var": "expires_at"}, {"now": []}]})
    assert condition({"expires_at": "2026-11-22T09:00:00Z"})
    assert not condition({"expires_at": "2026-11-24T09:00:00Z"})


def test_extras_inside_templates(logic: Logic) -> None:
    body = Template.compile(
        {
            "to": {"e164": {"var": "phone"}},
            "email": {"lower": {"var": "email"}},
            "vip": {"regex_match": ["^VIP-", {"upper": {"var": "code"}}]},
            "sent_at": {"now": []},
        },
        logic=logic,
    )
    event = {"phone": "415 555 2671", "email": "A@B.COM", "code": "vip-7"}
    assert body.render(event) == {
        "to": "+14155552671",
        "email": "a@b.com",
        "vip": True,
        "sent_at": "2026-11-23T10:00:00Z",
    }
