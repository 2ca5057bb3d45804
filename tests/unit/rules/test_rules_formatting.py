"""format_number, format_time and default: values, edge cases and load-time checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rules import EvaluationError, Logic, LogicError, RuleSet, load_dir


@pytest.fixture
def logic() -> Logic:
    return Logic()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([1234567.891, 2], "1,234,567.89"),
        ([1234567.891], "1,234,568"),
        ([-1234.5, 1], "-1,234.5"),
        ([1234.5, 2, "."], "1.234,50"),
        ([1234.5, 2, ""], "1234.50"),
        ([1234.5, 2, "'"], "1'234.50"),
        (["98765", 0, " "], "98 765"),
        ([0.005, 2], "0.01"),
        ([12, 3], "12.000"),
        (["n/a", 2], None),
        ([None, 2], None),
        ([True, 2], None),
        (["nan", 2], None),
    ],
)
def test_format_number(logic: Logic, args: list[Any], expected: str | None) -> None:
    assert logic.evaluate({"format_number": args}, {}) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["2026-11-23T10:00:00Z", "%Y-%m-%d %H:%M"], "2026-11-23 10:00"),
        (["2026-11-23T10:00:00Z", "%H:%M %Z", "Europe/Paris"], "11:00 CET"),
        (["2026-07-01T10:00:00Z", "%H:%M %Z", "Europe/Paris"], "12:00 CEST"),
        (["2026-11-23T10:00:00+02:00", "%H:%M", "UTC"], "08:00"),
        (["2026-11-23T10:00:00", "%H:%M", "Asia/Tokyo"], "19:00"),
        ([1795428000, "%A %d %B", "America/New_York"], "Monday 23 November"),
        (["1795428000", "%Y", None], "2026"),
        (["yesterday", "%Y"], None),
        ([None, "%Y"], None),
        (["2026-11-23T10:00:00Z", "100%% at %H"], "100% at 10"),
    ],
)
def test_format_time(logic: Logic, args: list[Any], expected: str | None) -> None:
    assert logic.evaluate({"format_time": args}, {}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "x"), ("", "x"), (0, 0), (False, False), ("Ada", "Ada"), ([], [])],
)
def test_default_replaces_only_missing_null_and_empty_string(
    logic: Logic, value: Any, expected: Any
) -> None:
    assert logic.evaluate({"default": [{"var": "v"}, "x"]}, {"v": value}) == expected
    assert logic.evaluate({"default": [{"var": "missing"}, {"var": "v"}]}, {"v": 7}) == 7


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"format_time": [{"var": "t"}, "%Q"]}, "'%Q' is not a strftime directive"),
        ({"format_time": [{"var": "t"}, "%Y %"]}, "a trailing %"),
        ({"format_time": [{"var": "t"}, ""]}, "pattern must be a non-empty string"),
        ({"format_time": [{"var": "t"}, "%Y", "Mars/Base"]}, "unknown time zone 'Mars/Base'"),
        ({"format_time": [{"var": "t"}, "%Y", "../etc/passwd"]}, "unknown time zone"),
        ({"format_number": [{"var": "n"}, -1]}, "decimals must be an integer from 0 to 20"),
        ({"format_number": [{"var": "n"}, 2, "1"]}, "thousands separator must be"),
        ({"format_time": [{"var": "t"}]}, "`format_time` takes 2 to 3 arguments"),
        ({"default": [{"var": "t"}]}, "`default` takes exactly 2 arguments"),
    ],
)
def test_bad_literal_arguments_fail_at_compile(
    logic: Logic, expression: dict[str, Any], message: str
) -> None:
    with pytest.raises(LogicError) as caught:
        logic.expression(expression)
    assert message in str(caught.value)


def test_a_bad_zone_read_from_the_event_fails_that_evaluation_only(logic: Logic) -> None:
    expression = logic.expression({"format_time": [{"var": "t"}, "%H", {"var": "zone"}]})
    assert expression.evaluate({"t": "2026-11-23T10:00:00Z", "zone": "Asia/Kolkata"}) == "15"
    with pytest.raises(EvaluationError):
        expression.evaluate({"t": "2026-11-23T10:00:00Z", "zone": "Nowhere/Else"})


def test_rules_check_reports_bad_pattern_and_zone_as_file_rule_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        """
[[rules]]
id = "r1"
  [[rules.actions]]
  type = "webhook"
  url = "https://x.example/h"
  body = { at = { format_time = [{ var = "t" }, "%d %q", "Europe/Pariss"] } }
""",
        encoding="utf-8",
    )
    result = load_dir(tmp_path, action_types=("webhook",))
    texts = [str(e) for e in result.errors]
    assert result.rules == ()
    assert any(t.startswith(f"{tmp_path / 'a.toml'}:r1: actions[0].body: ") for t in texts)
    assert any("'%q' is not a strftime directive" in t for t in texts), texts
    assert any("unknown time zone 'Europe/Pariss'" in t for t in texts), texts


def test_helpers_render_in_a_loaded_body(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        """
[[rules]]
id = "paid"
  [[rules.actions]]
  type = "webhook"
  url = "https://x.example/h"
  body = { text = { cat = [
    "Hi ", { default = [{ var = "name" }, "there"] }, ": $",
    { format_number = [{ var = "amount" }, 2] }, " at ",
    { format_time = [{ var = "at" }, "%H:%M", "America/Chicago"] },
  ] } }
""",
        encoding="utf-8",
    )
    result = load_dir(tmp_path, action_types=("webhook",))
    assert result.errors == ()
    event = {"amount": 1249.5, "at": "2026-11-23T18:05:00Z"}
    (match,) = RuleSet(result.rules).match("any", event)
    body = match.rule.actions[0].body
    assert body is not None
    assert body.render(event) == {"text": "Hi there: $1,249.50 at 12:05"}
