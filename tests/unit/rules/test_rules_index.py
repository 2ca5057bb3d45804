"""The index: a match evaluates only the candidate buckets, keeps rule order, never raises."""

from __future__ import annotations

from typing import Any

import pytest

from rules import (
    UNSET,
    Action,
    EvaluationError,
    EventData,
    Logic,
    LogicError,
    Rule,
    RuleSet,
)

ACTIONS = (Action(type="webhook", url="https://example.com/hook"),)
APPS = ("crm", "billing", "support", "shop")
TYPES = 500


@pytest.fixture(scope="module")
def logic() -> Logic:
    return Logic()


def make_rule(logic: Logic, rule_id: str, *, when: Any = None, **fields: Any) -> Rule:
    condition = None if when is None else logic.compile(when)
    return Rule(id=rule_id, when=when, condition=condition, actions=ACTIONS, **fields)


def big_rules(logic: Logic) -> list[Rule]:
    """10 000 rules over 500 event types and four apps, with some wildcards of each kind."""
    rules = []
    for i in range(10_000):
        apps = frozenset() if i % 5 == 0 else frozenset({APPS[i % 4]})
        types = frozenset() if i % 997 == 0 else frozenset({f"type{i % TYPES}"})
        when = None if i % 3 == 0 else {"==": [{"var": "n"}, i % 7]}
        rules.append(
            make_rule(
                logic,
                f"r{i}",
                when=when,
                apps=apps,
                event_types=types,
                enabled=i % 11 != 0,
            )
        )
    return rules


def applies(rule: Rule, app: str, event_type: str | None) -> bool:
    """The brute-force definition the index must agree with."""
    return (
        rule.enabled
        and (not rule.apps or app in rule.apps)
        and (not rule.event_types or event_type in rule.event_types)
    )


@pytest.fixture(scope="module")
def big(logic: Logic) -> RuleSet:
    return RuleSet(big_rules(logic), logic=logic)


@pytest.mark.parametrize(
    ("app", "event_type", "n"),
    [("crm", "type1", 1), ("billing", "type42", 0), ("shop", "type499", 3),
     ("unknown-app", "type7", 0), ("crm", "no-such-type", 5), ("crm", None, 6)],
)  # fmt: skip
def test_match_evaluates_only_the_candidates(
    big: RuleSet, app: str, event_type: str | None, n: int
) -> None:
    assert len(big) == 10_000
    expected = [r for r in big.rules if applies(r, app, event_type)]
    event: dict[str, Any] = {"n": n}
    if event_type is not None:
        event["event_type"] = event_type
    before = big.evaluations
    matches = big.match(app, event)
    evaluated = big.evaluations - before
    assert evaluated == sum(1 for r in expected if r.when is not None)
    assert evaluated < 60  # a handful of buckets, not 10 000 rules
    want = [r.id for r in expected if r.when is None or r.when["=="][1] == n]
    assert [m.rule.id for m in matches] == want
    assert [m.rule for m in big.candidates(app, event_type)] == expected


def test_wildcard_buckets_apply_to_every_app_and_type(logic: Logic) -> None:
    ruleset = RuleSet(
        [
            make_rule(logic, "any-app-any-type"),
            make_rule(logic, "crm-any-type", apps=frozenset({"crm"})),
            make_rule(logic, "any-app-paid", event_types=frozenset({"paid"})),
            make_rule(logic, "crm-paid", apps=frozenset({"crm"}), event_types=frozenset({"paid"})),
            make_rule(
                logic, "shop-paid", apps=frozenset({"shop"}), event_types=frozenset({"paid"})
            ),
        ],
        logic=logic,
    )

    def ids(app: str, event: dict[str, Any]) -> list[str]:
        return [m.rule.id for m in ruleset.match(app, event)]

    assert ids("crm", {"event_type": "paid"}) == [
        "any-app-any-type",
        "crm-any-type",
        "any-app-paid",
        "crm-paid",
    ]
    assert ids("shop", {"event_type": "paid"}) == ["any-app-any-type", "any-app-paid", "shop-paid"]
    assert ids("other", {"event_type": "paid"}) == ["any-app-any-type", "any-app-paid"]
    assert ids("crm", {"event_type": "refunded"}) == ["any-app-any-type", "crm-any-type"]
    assert ids("crm", {}) == ["any-app-any-type", "crm-any-type"]
    assert ruleset.evaluations == 0  # no rule has a condition


def test_rules_with_several_apps_and_types_match_once_each(logic: Logic) -> None:
    rule = make_rule(logic, "multi", apps=frozenset({"a", "b"}), event_types=frozenset({"x", "y"}))
    ruleset = RuleSet([rule], logic=logic)
    for app in ("a", "b"):
        for event_type in ("x", "y"):
            assert [m.rule for m in ruleset.match(app, {"type": event_type})] == [rule]
    assert ruleset.match("c", {"type": "x"}) == []
    assert ruleset.match("a", {"type": "z"}) == []


def test_disabled_rules_never_match(logic: Logic) -> None:
    ruleset = RuleSet([make_rule(logic, "off", enabled=False), make_rule(logic, "on")], logic=logic)
    assert [m.rule.id for m in ruleset.match("any", {})] == ["on"]
    assert len(ruleset) == 2 and ruleset.get("off") is not None


def test_event_type_fields_and_explicit_event_type(logic: Logic) -> None:
    rules = [make_rule(logic, "paid", event_types=frozenset({"paid"}))]
    ruleset = RuleSet(rules, logic=logic)
    assert ruleset.event_type_of({"eventType": "paid", "type": "x"}) == "paid"
    assert ruleset.event_type_of({"event_type": 3, "event": "paid"}) == "paid"  # not a string
    assert ruleset.event_type_of({"other": "paid"}) is None
    assert ruleset.match("a", {"type": "paid"})
    assert ruleset.match("a", {"type": "paid"}, event_type=None) == []
    assert ruleset.match("a", {}, event_type="paid")
    assert ruleset.match("a", {}, event_type=UNSET) == []
    custom = RuleSet(rules, logic=logic, event_type_fields=("kind",))
    assert custom.match("a", {"kind": "paid"}) and not custom.match("a", {"type": "paid"})


def test_conditions_are_evaluated_against_one_event_data(logic: Logic) -> None:
    rules = [
        make_rule(logic, "big-spender", when={">": [{"var": "amount"}, 100]}),
        make_rule(logic, "has-phone", when={"!!": {"var": "phone"}}),
        make_rule(logic, "has-meta", when={"var": "meta"}),  # {} is truthy
        make_rule(logic, "always"),
    ]
    ruleset = RuleSet(rules, logic=logic)
    event = {"amount": 150, "meta": {}}
    assert [m.rule.id for m in ruleset.match("a", event)] == ["big-spender", "has-meta", "always"]
    data = EventData(event)
    assert [m.rule.id for m in ruleset.match("a", event, data=data)] == [
        "big-spender",
        "has-meta",
        "always",
    ]
    assert ruleset.evaluations == 6


def test_a_failing_condition_does_not_break_the_others(logic: Logic) -> None:
    failures: list[tuple[str, EvaluationError]] = []
    rules = [
        make_rule(logic, "before"),
        make_rule(logic, "bad-regex", when={"regex_match": [{"var": "pattern"}, "abc"]}),
        make_rule(logic, "bad-math", when={"+": [1, {"*": [{"var": "pattern"}, 2]}]}),
        make_rule(logic, "after", when={"==": [{"var": "pattern"}, "("]}),
    ]
    ruleset = RuleSet(rules, logic=logic, on_error=lambda r, e: failures.append((r.id, e)))
    matches = ruleset.match("a", {"pattern": "("})
    assert [m.rule.id for m in matches] == ["before", "after"]
    assert ruleset.evaluation_errors == 2
    assert ruleset.evaluations == 3
    assert [rule_id for rule_id, _ in failures] == ["bad-regex", "bad-math"]
    assert all(isinstance(error, EvaluationError) for _, error in failures)


def test_rules_given_without_a_compiled_condition_are_compiled(logic: Logic) -> None:
    raw = Rule(id="raw", when={"==": [{"var": "x"}, 1]}, actions=ACTIONS)
    ruleset = RuleSet([raw], logic=logic)
    assert ruleset.rules[0].condition is not None
    assert ruleset.match("a", {"x": 1}) and not ruleset.match("a", {"x": 2})
    with pytest.raises(LogicError):
        RuleSet([Rule(id="bad", when={"nope": 1}, actions=ACTIONS)], logic=logic)


def test_conditions_from_another_logic_still_work(logic: Logic) -> None:
    other = Logic()
    ruleset = RuleSet(
        [
            make_rule(other, "theirs", when={"var": "x"}),
            make_rule(logic, "ours", when={"var": "x"}),
        ],
        logic=logic,
    )
    assert [m.rule.id for m in ruleset.match("a", {"x": 1})] == ["theirs", "ours"]


def test_duplicate_ids_are_refused(logic: Logic) -> None:
    with pytest.raises(ValueError, match="duplicate rule id 'x'"):
        RuleSet([make_rule(logic, "x"), make_rule(logic, "x")], logic=logic)


def test_with_extra_appends_target_rules(logic: Logic) -> None:
    files = RuleSet([make_rule(logic, "file-rule", event_types=frozenset({"paid"}))], logic=logic)
    target = Rule.for_target("tgt_1", "https://hooks.example.com/in", ["paid"], logic=logic)
    combined = files.with_extra([target])
    assert [r.id for r in combined] == ["file-rule", "target:tgt_1"]
    assert [m.rule.id for m in combined.match("a", {"type": "paid"})] == [
        "file-rule",
        "target:tgt_1",
    ]
    assert combined.version != files.version
    assert len(files) == 1  # unchanged


def test_version_is_stable_and_content_based(logic: Logic) -> None:
    a = [make_rule(logic, "a", when={"var": "x"}), make_rule(logic, "b")]
    assert RuleSet(a, logic=logic).version == RuleSet(list(a), logic=Logic()).version
    moved = [Rule(id=r.id, when=r.when, actions=r.actions, source="elsewhere.toml") for r in a]
    assert RuleSet(moved, logic=logic).version == RuleSet(a, logic=logic).version
    assert RuleSet(a[::-1], logic=logic).version != RuleSet(a, logic=logic).version
    changed = [make_rule(logic, "a", when={"var": "y"}), a[1]]
    assert RuleSet(changed, logic=logic).version != RuleSet(a, logic=logic).version
    assert RuleSet([], logic=logic).version == RuleSet((), logic=logic).version


def test_empty_ruleset_matches_nothing(logic: Logic) -> None:
    assert RuleSet(logic=logic).match("a", {"type": "x"}) == []
