"""Retry policies: parsing what operators write, and when the next attempt falls due."""

from __future__ import annotations

import math
from typing import Any

import pytest

from actions.errors import ActionError
from actions.retry import STANDARD, RetryPolicy, next_attempt_at, parse_retry

NOW = 1_700_000_000.0


def test_none_is_a_single_attempt() -> None:
    policy = parse_retry("none")
    assert policy == RetryPolicy("none", ())
    assert policy.max_attempts == 1


def test_standard_is_eight_attempts_over_about_a_day() -> None:
    policy = parse_retry("standard")
    assert policy.name == "standard"
    assert policy.delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert policy.max_attempts == 8


def test_names_are_read_case_insensitively() -> None:
    assert parse_retry(" Standard ") is STANDARD


def test_a_list_is_the_delays_before_each_retry() -> None:
    policy = parse_retry([1, 1])
    assert policy == RetryPolicy("custom", (1.0, 1.0))
    assert policy.max_attempts == 3
    assert parse_retry((0.5, 30)).delays == (0.5, 30.0)


def test_an_empty_list_means_no_retry() -> None:
    assert parse_retry([]) == parse_retry("none")


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        STANDARD.delays = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sometimes", "unknown retry policy 'sometimes'"),
        ("", "unknown retry policy"),
        ([-1], "must be a finite number >= 0"),
        ([math.nan], "must be a finite number >= 0"),
        ([math.inf], "must be a finite number >= 0"),
        ([True], "must be a number of seconds"),
        (["5"], "must be a number of seconds"),
        ([5, None], "retry delay #2"),
        ([8 * 24 * 3600], "at most 7 days"),
        ([1] * 26, "at most 25 delays"),
        (5, "got int"),
        ({"delays": [1]}, "got dict"),
    ],
)
def test_invalid_policies_are_refused_with_a_clear_message(value: Any, message: str) -> None:
    with pytest.raises(ActionError, match=message.replace("(", r"\(")):
        parse_retry(value)


def test_no_attempt_yet_is_due_now() -> None:
    assert next_attempt_at(STANDARD.delays, 0, NOW) == NOW


def test_standard_schedule_waits_grow_then_run_out() -> None:
    due = [next_attempt_at(STANDARD.delays, made, NOW) for made in range(1, 9)]
    assert due == [
        NOW + 5,
        NOW + 300,
        NOW + 1800,
        NOW + 7200,
        NOW + 18000,
        NOW + 36000,
        NOW + 36000,
        None,
    ]


def test_none_policy_is_exhausted_after_one_attempt() -> None:
    assert next_attempt_at((), 1, NOW) is None


def test_two_delays_give_three_attempts() -> None:
    delays = parse_retry([1, 1]).delays
    assert next_attempt_at(delays, 1, NOW) == NOW + 1
    assert next_attempt_at(delays, 2, NOW) == NOW + 1
    assert next_attempt_at(delays, 3, NOW) is None


def test_retry_after_pushes_the_next_attempt_later_never_earlier() -> None:
    assert next_attempt_at((5.0,), 1, NOW, retry_after=120) == NOW + 120
    assert next_attempt_at((300.0,), 1, NOW, retry_after=10) == NOW + 300


def test_retry_after_does_not_revive_an_exhausted_policy() -> None:
    assert next_attempt_at((), 1, NOW, retry_after=60) is None


@pytest.mark.parametrize("nonsense", [math.nan, math.inf, -30.0])
def test_nonsense_retry_after_is_ignored(nonsense: float) -> None:
    assert next_attempt_at((5.0,), 1, NOW, retry_after=nonsense) == NOW + 5


def test_negative_attempt_count_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        next_attempt_at((), -1, NOW)


def test_retry_after_is_capped_at_the_longest_allowed_delay() -> None:
    from actions.retry import MAX_DELAY_SECONDS

    assert next_attempt_at((1.0,), 1, 1000.0, retry_after=10**9) == 1000.0 + MAX_DELAY_SECONDS
