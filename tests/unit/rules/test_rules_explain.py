"""`rules.explain`: why each rule did or did not match, and the `var` paths an event lacks."""

from __future__ import annotations

from rules import Action, Rule, RuleSet, Template, explain, has_path, var_paths


def test_var_paths_walks_expressions_defaults_and_templates() -> None:
    logic = {"and": [{"var": "a.b"}, {"==": [{"var": ["c", {"var": "d"}]}, 1]}, {"var": ""}]}
    assert list(var_paths(logic)) == ["a.b", "c", "d"]
    assert list(var_paths({"to": {"var": 0}})) == ["0"]


def test_has_path_follows_objects_and_list_indexes() -> None:
    event = {"a": {"b": [10, {"c": None}]}}
    assert has_path(event, "a.b.1.c")
    assert not has_path(event, "a.b.2")
    assert not has_path(event, "a.x")


def test_explain_agrees_with_match_and_names_the_first_failed_check() -> None:
    body = Template.compile({"to": {"var": "phone"}})
    ruleset = RuleSet(
        [
            Rule("for-crm", apps=frozenset({"crm"})),
            Rule("typed", event_types=frozenset({"paid"})),
            Rule("phone", when={"!!": {"var": "phone"}}),
            Rule("renders", actions=(Action(type="webhook", url="https://e.x/", body=body),)),
            Rule("off", enabled=False),
        ]
    )
    event = {"type": "created"}
    verdicts = {v.rule_id: v for v in explain(ruleset, "shop", event, "created")}
    assert [r for r, v in verdicts.items() if v.matched] == [
        m.rule.id for m in ruleset.match("shop", event)
    ]
    assert verdicts["for-crm"].reason == "app 'shop' is not listed in apps (crm)"
    assert verdicts["typed"].reason == "event type 'created' is not listed in event_types (paid)"
    assert verdicts["phone"].reason == "when was false"
    assert verdicts["phone"].missing_vars == ("phone",)
    assert verdicts["renders"].matched and verdicts["renders"].missing_vars == ("phone",)
    assert verdicts["off"].reason == "rule is disabled"
