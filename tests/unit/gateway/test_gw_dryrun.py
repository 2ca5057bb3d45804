"""Dry runs: what `hookgate rules test` and `POST /v1/rules/test` both show."""

from __future__ import annotations

from actions import Delivery
from gateway.models import WebhookTarget
from gateway.rulesets.dryrun import dry_run, secret_lookup
from rules import Action, Rule, RuleSet, Template


def test_a_delivery_gets_its_targets_secret_or_its_rules_env_var() -> None:
    targets = {"wht_1": WebhookTarget(id="wht_1", url="https://t.example/", secret="whsec_t")}
    secret_for = secret_lookup(targets, env={"CRM_SECRET": "whsec_env"})
    to_target = Delivery(id="d1", event_id="e", action_type="webhook", url="u", target_id="wht_1")
    gone = Delivery(id="d2", event_id="e", action_type="webhook", url="u", target_id="wht_9")
    by_env = Delivery(
        id="d3", event_id="e", action_type="webhook", url="u", secret_env="CRM_SECRET"
    )
    unset = Delivery(id="d4", event_id="e", action_type="webhook", url="u", secret_env="NOPE")
    unsigned = Delivery(id="d5", event_id="e", action_type="webhook", url="u")
    assert secret_for(to_target) == "whsec_t"
    assert secret_for(gone) is None
    assert secret_for(by_env) == "whsec_env"
    assert secret_for(unset) is None
    assert secret_for(unsigned) is None


def test_a_dry_run_renders_the_matching_rules_requests_and_explains_the_rest() -> None:
    body = Template.compile({"to": {"var": "phone"}, "text": {"var": "message"}})
    ruleset = RuleSet(
        [
            Rule(
                "forward",
                when={"==": [{"var": "type"}, "message"]},
                actions=(Action(type="webhook", url="https://crm.example/in", body=body),),
            ),
            Rule("billing", event_types=frozenset({"paid"})),
        ]
    )
    event = {"type": "message", "phone": "+15550100", "message": "hi"}
    out = dry_run(ruleset, "crm", event, secret_lookup({}, env={}))
    assert out["event_type"] == "message"
    assert out["matched_rules"] == ["forward"]
    (request,) = out["requests"]
    assert request["url"] == "https://crm.example/in"
    assert "+15550100" in str(request["body"])
    verdicts = {v["rule_id"]: v for v in out["rules"]}
    assert verdicts["forward"]["matched"] is True
    assert verdicts["billing"]["matched"] is False
    assert "event_types" in verdicts["billing"]["reason"]


def test_a_dry_run_with_no_match_sends_nothing_and_says_why() -> None:
    ruleset = RuleSet([Rule("only-crm", apps=frozenset({"crm"}))])
    out = dry_run(ruleset, "shop", {"type": "x"}, secret_lookup({}, env={}))
    assert out["matched_rules"] == []
    assert out["requests"] == []
    assert out["rules"][0]["reason"] == "app 'shop' is not listed in apps (crm)"
