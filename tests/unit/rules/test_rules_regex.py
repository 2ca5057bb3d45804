"""`regex_match` runs on RE2: linear time on hostile values, RE2-only syntax refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import Logic, LogicError, load_dir

# 10 000 `a`s and a `!`: `^(a+)+$` on a backtracking engine tries every way of splitting the
# run of `a`s before failing (about 250 ms at 22 characters, doubling with each one more), so
# this value never finishes there; the per-test timeout turns that hang into a failure.
HOSTILE = "a" * 10_000 + "!"


@pytest.mark.timeout(20)
def test_nested_quantifier_on_a_hostile_value_returns() -> None:
    logic = Logic()
    condition = logic.compile({"regex_match": ["^(a+)+$", {"var": "v"}]})
    assert condition({"v": HOSTILE}) is False
    assert condition({"v": "a" * 10_000}) is True


@pytest.mark.timeout(20)
def test_a_hostile_pattern_read_from_the_event_returns_too() -> None:
    logic = Logic()
    condition = logic.compile({"regex_match": [{"var": "p"}, {"var": "v"}]})
    assert condition({"p": "^(a|aa)+$", "v": HOSTILE}) is False


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape sequence"),
        ("foo(?=bar)", "invalid perl operator"),
        ("(?<!x)y", "invalid perl operator"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_at_load_with_the_reason(
    tmp_path: Path, pattern: str, reason: str
) -> None:
    literal = pattern.replace("\\", "\\\\")
    (tmp_path / "r.toml").write_text(
        f'[[rules]]\nid = "r1"\nwhen = {{ regex_match = ["{literal}", {{ var = "x" }}] }}\n'
        '  [[rules.actions]]\n  type = "webhook"\n  url = "https://example.com/h"\n',
        encoding="utf-8",
    )
    result = load_dir(tmp_path, action_types=("webhook",), env={})
    assert result.rules == ()
    (error,) = result.errors
    text = str(error)
    assert text.startswith(f"{tmp_path / 'r.toml'}:r1: when: regex_match: ")
    assert reason in text
    assert "backreferences and lookaround are not supported" in text
    assert text.endswith("(at /regex_match/0)")


def test_compile_refuses_lookaround_with_its_pointer() -> None:
    with pytest.raises(LogicError) as caught:
        Logic().compile({"and": [True, {"regex_match": ["a(?=b)", {"var": "x"}]}]})
    (problem,) = caught.value.problems
    assert problem.pointer == "/and/1/regex_match/0"
    assert "invalid perl operator: (?=" in problem.message
