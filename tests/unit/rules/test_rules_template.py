"""Body templates: literals pass through, expressions are filled in, everything compiled once."""

from __future__ import annotations

from typing import Any

import pytest

from rules import EvaluationError, EventData, Logic, LogicError, Template

EVENT = {"phone": "+14155552671", "name": "Ada", "n": 2, "tags": ["a", "b"], "meta": {}}


@pytest.mark.parametrize(
    "source",
    [
        {"a": 1, "b": [1, "x", None, True, 2.5], "c": {"foo": "bar"}, "d": {}},
        {"foo": {"bar": [1, 2]}},  # single unknown key: a literal object
        [1, "two", {"three": 3}],
        "plain text",
        42,
        None,
        {},
        [],
    ],
)
def test_templates_without_expressions_pass_through(source: Any) -> None:
    template = Template.compile(source)
    assert template.is_constant
    assert template.expressions == 0
    assert template.render(EVENT) == source


def test_constant_templates_render_without_touching_the_event() -> None:
    # Not even JSON: a constant template never builds a data handle.
    assert Template.compile({"ok": True}).render(object()) == {"ok": True}


def test_expressions_are_filled_in_at_any_depth() -> None:
    template = Template.compile(
        {
            "to": {"var": "phone"},
            "text": {"cat": ["Thanks ", {"var": "name"}, "!"]},
            "meta": {"count": {"+": [{"var": "n"}, 1]}, "source": "hookgate"},
            "deep": {"x": {"y": {"z": {"var": "name"}}}},
            "literal": {"unknown_op": {"var": "name"}},
        }
    )
    assert not template.is_constant
    assert template.expressions == 5
    assert template.render(EVENT) == {
        "to": "+14155552671",
        "text": "Thanks Ada!",
        "meta": {"count": 3, "source": "hookgate"},
        "deep": {"x": {"y": {"z": "Ada"}}},
        "literal": {"unknown_op": "Ada"},
    }


def test_arrays_are_literal_arrays_of_templates() -> None:
    template = Template.compile([{"var": "name"}, 2, [{"var": "n"}, "x"], {"k": {"var": "n"}}])
    assert template.render(EVENT) == ["Ada", 2, [2, "x"], {"k": 2}]


def test_a_whole_template_can_be_one_expression() -> None:
    assert Template.compile({"var": "tags"}).render(EVENT) == ["a", "b"]
    assert Template.compile({"var": "missing"}).render(EVENT) is None


def test_key_order_is_kept() -> None:
    source = {"z": {"var": "name"}, "a": 1, "m": {"var": "n"}}
    assert list(Template.compile(source).render(EVENT)) == ["z", "a", "m"]


def test_multi_key_objects_are_literal_even_with_operator_keys() -> None:
    source = {"if": "literal", "var": {"var": "name"}}
    assert Template.compile(source).render(EVENT) == {"if": "literal", "var": "Ada"}


def test_standard_truthiness_inside_templates() -> None:
    template = Template.compile({"has_meta": {"if": [{"var": "meta"}, "yes", "no"]}})
    assert template.render(EVENT) == {"has_meta": "yes"}  # {} is truthy


def test_render_accepts_event_data_and_sessions() -> None:
    logic = Logic()
    template = Template.compile({"to": {"var": "phone"}}, logic=logic)
    data = EventData(EVENT)
    assert template.render(data) == {"to": "+14155552671"}
    assert template.render_in(logic.session(), data) == {"to": "+14155552671"}


def test_unknown_operators_inside_expressions_are_reported_with_pointers() -> None:
    with pytest.raises(LogicError) as caught:
        Template.compile({"text": {"cat": ["a", {"vr": "x"}]}, "list": [1, {"map": [1]}]})
    pointers = sorted(p.pointer for p in caught.value.problems)
    assert pointers == ["/list/1", "/text/cat/1"]


def test_non_json_values_are_reported() -> None:
    import datetime

    with pytest.raises(LogicError, match="not a JSON value") as caught:
        Template.compile({"at": datetime.datetime(2026, 1, 1)})
    assert caught.value.problems[0].pointer == "/at"


def test_a_failing_expression_raises_evaluation_error() -> None:
    template = Template.compile({"ok": {"regex_match": [{"var": "p"}, "x"]}})
    with pytest.raises(EvaluationError):
        template.render({"p": "("})


def test_templates_are_equal_by_source() -> None:
    assert Template.compile({"a": {"var": "x"}}) == Template.compile({"a": {"var": "x"}})
    assert Template.compile({"a": 1}) != Template.compile({"a": 1.5})
