"""The evaluator: the official JsonLogic suite, standard truthiness, compile-time checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import rules
from rules import Condition, EvaluationError, EventData, Logic, LogicError

SUITE = Path(__file__).parents[2] / "data" / "jsonlogic" / "tests.json"


def _cases() -> list[tuple[Any, Any, Any]]:
    with SUITE.open(encoding="utf-8") as file:
        items = json.load(file)
    return [tuple(item) for item in items if not isinstance(item, str)]


CASES = _cases()


def same_json(actual: Any, expected: Any) -> bool:
    """Equal as JSON values: numbers compare numerically (1 == 1.0), a bool is never a number."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same_json(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(same_json(actual[k], expected[k]) for k in expected)
        )
    return type(actual) is type(expected) and actual == expected


def test_the_suite_has_all_277_cases() -> None:
    assert len(CASES) == 277


@pytest.mark.parametrize(("logic", "data", "expected"), CASES, ids=[str(i) for i in range(277)])
def test_official_jsonlogic_case(logic: Any, data: Any, expected: Any) -> None:
    assert same_json(rules.evaluate(logic, data), expected)


def test_same_json_tells_bools_from_numbers() -> None:
    assert same_json(1, 1.0)
    assert not same_json(True, 1)
    assert not same_json([0], [False])


def test_a_bare_string_rule_is_a_literal() -> None:
    assert rules.evaluate("apple", {}) == "apple"
    assert rules.evaluate("", None) == ""
    assert rules.evaluate('{"var": "x"}', {"x": 1}) == '{"var": "x"}'


def test_bare_string_data_is_a_value_not_json_text() -> None:
    assert rules.evaluate({"var": ""}, "apple") == "apple"
    assert rules.evaluate({"cat": [{"var": ""}, "!"]}, "1") == "1!"


@pytest.mark.parametrize(
    ("value", "truthy"),
    [({}, True), ({"a": 1}, True), ([], False), ([0], True), (0, False), ("", False),
     ("0", True), (None, False), (False, False)],
)  # fmt: skip
def test_truthiness_is_standard_everywhere(value: Any, truthy: bool) -> None:
    data = {"x": value}
    yes_no = "yes" if truthy else "no"
    assert rules.evaluate({"if": [{"var": "x"}, "yes", "no"]}, data) == yes_no
    assert rules.evaluate({"?:": [{"var": "x"}, "yes", "no"]}, data) == yes_no
    assert rules.evaluate({"!!": {"var": "x"}}, data) is truthy
    assert rules.evaluate({"!!": [{"var": "x"}]}, data) is truthy
    assert rules.evaluate({"!": [{"var": "x"}]}, data) is (not truthy)
    assert rules.evaluate({"filter": [[{"var": "x"}], {"var": ""}]}, data) == (
        [value] if truthy else []
    )
    assert rules.evaluate({"some": [[{"var": "x"}], {"var": ""}]}, data) is truthy
    assert rules.evaluate({"all": [[{"var": "x"}], {"var": ""}]}, data) is truthy
    assert rules.evaluate({"none": [[{"var": "x"}], {"var": ""}]}, data) is (not truthy)
    assert rules.compile({"var": "x"})(data) is truthy


@pytest.mark.parametrize("value", [{}, {"a": 1}, [], 0, "", None, "s"])
def test_and_or_return_the_deciding_operand_with_standard_truthiness(value: Any) -> None:
    truthy = value == {} or bool(value)
    data = {"x": value}
    assert rules.evaluate({"or": [{"var": "x"}, 5]}, data) == (value if truthy else 5)
    assert rules.evaluate({"and": [{"var": "x"}, 5]}, data) == (5 if truthy else value)
    assert rules.evaluate({"and": [True, {"var": "x"}, 5]}, data) == (5 if truthy else value)
    assert rules.evaluate({"or": [False, {"var": "x"}, {"var": "x"}]}, data) == value
    assert rules.compile({"or": [{"var": "x"}, False]})(data) is truthy


def test_empty_object_literal_and_computed_objects_are_truthy() -> None:
    assert rules.evaluate({"if": [{}, 1, 2]}, None) == 1
    assert rules.evaluate({"!": [{}]}, None) is False
    assert rules.evaluate({"if": [{"if": [True, {"var": "x"}, 0]}, 1, 2]}, {"x": {}}) == 1
    assert rules.evaluate({"if": [{"or": [{"var": "x"}, 0]}, 1, 2]}, {"x": {}}) == 1
    assert rules.evaluate({"!!": [{"reduce": [[1], {"var": "accumulator"}, {}]}]}, None) is True
    nested = {"filter": [{"var": "items"}, {"var": "meta"}]}
    items = [{"meta": {}}, {"meta": []}, {"meta": {"k": 1}}, {}]
    assert rules.evaluate(nested, {"items": items}) == [{"meta": {}}, {"meta": {"k": 1}}]


def test_condition_accepts_a_dict_or_event_data() -> None:
    condition = rules.compile({"==": [{"var": "name"}, "Ada"]})
    assert isinstance(condition, Condition)
    assert condition({"name": "Ada"}) is True
    assert condition(EventData({"name": "Bob"})) is False


def test_conditions_are_equal_by_logic() -> None:
    logic = Logic()
    assert logic.compile({"var": "a"}) == logic.compile({"var": "a"})
    assert logic.compile({"var": "a"}) != logic.compile({"var": "b"})
    assert hash(logic.compile({"var": "a"})) == hash(logic.compile({"var": "a"}))


def test_unknown_operators_are_rejected_with_their_pointer() -> None:
    with pytest.raises(LogicError) as caught:
        rules.compile({"if": [True, {"vr": "x"}, {"map": [1]}]})
    problems = {(p.pointer, p.message) for p in caught.value.problems}
    assert ("/if/1", "unknown operator `vr`; did you mean `var`?") in problems
    assert any(pointer == "/if/2" and "map" in message for pointer, message in problems)


def test_extra_operator_arity_and_literals_are_checked_at_compile_time() -> None:
    with pytest.raises(LogicError) as caught:
        rules.compile({"and": [{"now": [1]}, {"regex_match": ["(", {"var": "x"}]}]})
    messages = {p.pointer: p.message for p in caught.value.problems}
    assert "`now` takes exactly 0 arguments, not 1" in messages["/and/0"]
    assert "invalid regular expression" in messages["/and/1/regex_match/0"]
    with pytest.raises(LogicError, match="unknown phone region"):
        rules.compile({"e164": [{"var": "p"}, "ZZ"]})


def test_non_json_values_are_rejected() -> None:
    import datetime

    with pytest.raises(LogicError, match="not a JSON value"):
        rules.compile({"==": [{"var": "at"}, datetime.date(2026, 1, 1)]})
    with pytest.raises(LogicError, match="not a JSON number"):
        rules.compile({"==": [{"var": "x"}, float("nan")]})


def test_runtime_failures_raise_evaluation_error() -> None:
    with pytest.raises(EvaluationError):
        rules.evaluate({"regex_match": [{"var": "p"}, "abc"]}, {"p": "("})
    with pytest.raises(EvaluationError):
        rules.compile({"+": [1, {"*": ["x", 2]}]})({})


def test_event_data_rejects_non_json() -> None:
    with pytest.raises(EvaluationError, match="not JSON"):
        EventData({"a": object()})


def test_operator_names_cover_core_aliases_and_extras() -> None:
    names = Logic().operator_names
    assert {"var", "val", "if", "?:", "cat", "regex_match", "e164", "now"} <= names
    assert "log" not in names  # datalogic's core has no `log`; documented


def test_default_region_is_validated() -> None:
    with pytest.raises(ValueError, match="default_region"):
        Logic(default_region="XX")
