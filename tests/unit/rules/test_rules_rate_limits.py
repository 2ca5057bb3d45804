"""`rate` and `burst` on a rule action: what loads, what `rules check` refuses, and the
delivery rows they give (one bucket per rule action)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actions import RateLimit, plan_deliveries
from rules import LoadResult, RuleSet, load_dir

ACTION = '\n  [[rules.actions]]\n  type = "webhook"\n  url = "https://example.com/hook"\n'


def load(tmp_path: Path, actions: str) -> LoadResult:
    (tmp_path / "f.toml").write_text(f'[[rules]]\nid = "r1"\n{actions}', encoding="utf-8")
    return load_dir(tmp_path, action_types=("webhook", "forward"), env={})


def only_error(result: LoadResult) -> str:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return str(result.errors[0])


@pytest.mark.parametrize(
    ("lines", "expected_burst", "rate"),
    [
        ("rate = 5", 5, 5.0),
        ("rate = 0.5", 1, 0.5),  # at least one
        ("rate = 2.5", 3, 2.5),  # one second's worth, rounded up
        ("rate = 5\n  burst = 20", 20, 5.0),
        ("rate = 1\n  burst = 1", 1, 1.0),
    ],
)
def test_rate_and_burst_load_with_the_default_burst(
    tmp_path: Path, lines: str, expected_burst: int, rate: float
) -> None:
    result = load(tmp_path, ACTION + f"  {lines}\n")
    assert result.errors == ()
    action = result.rules[0].actions[0]
    assert (action.rate, action.burst) == (rate, expected_burst)
    assert action.content()["rate"] == rate and action.content()["burst"] == expected_burst


def test_an_action_without_rate_is_unlimited_and_keeps_its_version(tmp_path: Path) -> None:
    result = load(tmp_path, ACTION)
    action = result.rules[0].actions[0]
    assert (action.rate, action.burst) == (None, None)
    assert "rate" not in action.content() and "burst" not in action.content()


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ("rate = 0", ("actions[0].rate", "> 0", "got 0")),
        ("rate = -2", ("actions[0].rate", "> 0")),
        ('rate = "5/s"', ("actions[0].rate", "number of deliveries per second", "'5/s'")),
        ("rate = true", ("actions[0].rate", "number")),
        ("rate = inf", ("actions[0].rate", "number")),
        ("rate = nan", ("actions[0].rate", "number")),
        ("rate = 2e6", ("actions[0].rate", "<= 1e+06")),
        ("rate = 5\n  burst = 0", ("actions[0].burst", "integer >= 1", "got 0")),
        ("rate = 5\n  burst = 2.5", ("actions[0].burst", "integer")),
        ('rate = 5\n  burst = "3"', ("actions[0].burst", "integer")),
        ("burst = 3", ("actions[0].burst", "only a rate-limited action", "set rate")),
    ],
)
def test_rules_check_refuses_bad_rate_or_burst(
    tmp_path: Path, lines: str, words: tuple[str, ...]
) -> None:
    message = only_error(load(tmp_path, ACTION + f"  {lines}\n"))
    match = re.fullmatch(r"(?P<file>[^:]+):(?P<id>[^:\s]+): (?P<message>.+)", message, re.S)
    assert match, message
    assert (match["file"], match["id"]) == (str(tmp_path / "f.toml"), "r1")
    for word in words:
        assert word in match["message"], f"{word!r} not in {message!r}"


def test_each_rate_limited_action_gets_its_own_bucket_on_its_deliveries(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        ACTION + "  rate = 2\n" + ACTION + ACTION + "  rate = 0.5\n  burst = 4\n",
    )
    assert result.errors == ()
    matches = RuleSet(result.rules).match("crm", {"event_type": "x"})
    deliveries = plan_deliveries(matches, "evt_1", {"event_type": "x"}, 1_700_000_000.0)
    assert [d.rate_limit for d in deliveries] == [
        RateLimit("rule:r1:0", 2.0, 2),
        None,
        RateLimit("rule:r1:2", 0.5, 4),
    ]
