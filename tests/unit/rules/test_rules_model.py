"""Records: rules built from webhook targets, URL checks, equality and hashing."""

from __future__ import annotations

import dataclasses

import pytest

from rules import TARGET_RULE_PREFIX, Action, Logic, Match, Rule, RuleError, url_problem


def test_a_target_is_a_rule_with_one_webhook_action() -> None:
    rule = Rule.for_target(
        "tgt_1",
        "https://hooks.example.com/in",
        ["job_completed", "job_created"],
        {"==": [{"var": "status"}, "done"]},
        retry=(5.0, 30.0),
        disable_after=5,
        description="CRM",
    )
    assert rule.id == f"{TARGET_RULE_PREFIX}tgt_1"
    assert rule.target_id == "tgt_1"
    assert rule.source == "api:tgt_1"
    assert rule.event_types == frozenset({"job_completed", "job_created"})
    assert rule.apps == frozenset()
    assert rule.when == {"==": [{"var": "status"}, "done"]}
    assert rule.condition is not None
    assert rule.condition({"status": "done"}) and not rule.condition({"status": "new"})
    assert rule.actions == (
        Action(
            type="webhook",
            url="https://hooks.example.com/in",
            retry=(5.0, 30.0),
            disable_after=5,
        ),
    )
    assert rule.actions[0].body is None  # the caller sends the envelope


def test_target_defaults() -> None:
    rule = Rule.for_target("t", "http://localhost:8080/x")
    assert rule.event_types == frozenset() and rule.when is None and rule.condition is None
    assert rule.actions[0].retry == "standard" and rule.actions[0].disable_after == 3
    assert rule.enabled


def test_target_errors_are_rule_errors() -> None:
    with pytest.raises(RuleError, match=r"^api:t:target:t: url: must be an absolute http"):
        Rule.for_target("t", "ftp://x")
    with pytest.raises(RuleError, match=r"filter: unknown operator `vr`.*\(at /if/0\)"):
        Rule.for_target("t", "https://x.example", filter={"if": [{"vr": "x"}, 1, 2]})
    with pytest.raises(RuleError, match="events: must be a list of non-empty strings"):
        Rule.for_target("t", "https://x.example", events=[""])


def test_target_filter_uses_the_given_logic() -> None:
    gb = Logic(default_region="GB")
    rule = Rule.for_target("t", "https://x.example", filter={"e164": {"var": "phone"}}, logic=gb)
    assert rule.condition is not None and rule.condition.owner is gb
    assert rule.condition({"phone": "020 7946 0018"})


@pytest.mark.parametrize(
    "url",
    ["https://example.com", "http://localhost:8000/hooks?x=1", "https://[::1]:8443/a",
     "http://10.0.0.1/path#frag", "https://user:pw@host.example/"],
)  # fmt: skip
def test_good_urls(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    ["", "example.com", "//example.com/x", "ftp://example.com", "https://", "http:///path",
     "https://exa mple.com", "http://host:notaport/", "http://host:0/", "https://[::1/", None, 3],
)  # fmt: skip
def test_bad_urls(url: object) -> None:
    problem = url_problem(url)
    assert problem is not None


def test_rules_and_matches_are_frozen_hashable_values() -> None:
    rule = Rule.for_target("t", "https://x.example", filter={"var": "x"})
    same = Rule.for_target("t", "https://x.example", filter={"var": "x"})
    assert rule == same and hash(rule) == hash(same)
    assert {Match(rule), Match(same)} == {Match(rule)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.id = "other"  # type: ignore[misc]
    assert not hasattr(rule, "__dict__")  # slotted
