"""Match cost with a large rule set: 10 000 rules over 500 event types and 50 apps."""

from __future__ import annotations

import statistics
import time
from typing import Any

from rules import Logic, Rule, RuleSet

RULES = 10_000
TYPES = 500
APPS = 50


def build() -> tuple[RuleSet, dict[str, Any]]:
    logic = Logic()
    conditions = [
        logic.compile({"==": [{"var": "channel"}, "sms"]}),
        logic.compile(
            {"and": [{"!!": {"var": "from.phone"}}, {"!=": [{"var": "from.type"}, "bot"]}]}
        ),
        logic.compile({"in": [{"var": "priority"}, ["high", "urgent"]]}),
    ]
    rules = []
    for i in range(RULES):
        when = [
            {"==": [{"var": "channel"}, "sms"]},
            {"and": [{"!!": {"var": "from.phone"}}, {"!=": [{"var": "from.type"}, "bot"]}]},
            {"in": [{"var": "priority"}, ["high", "urgent"]]},
        ][i % 3]
        rules.append(
            Rule(
                id=f"rule-{i}",
                apps=frozenset() if i % 5 == 0 else frozenset({f"app-{(i // 7) % APPS}"}),
                event_types=frozenset({f"type.{i % TYPES}"}),
                when=when,
                condition=conditions[i % 3],
            )
        )
    event = {
        "event_type": "type.42",
        "channel": "sms",
        "from": {"phone": "+14155550123", "type": "customer"},
        "priority": "high",
        "text": "Hi, can we move my appointment to Thursday at 3pm?",
    }
    return RuleSet(rules, logic=logic), event


def run(iterations: int = 50_000) -> dict[str, float]:
    ruleset, event = build()
    samples = []
    matched = 0
    for i in range(iterations):
        app = f"app-{i % APPS}"
        started = time.perf_counter_ns()
        matches = ruleset.match(app, event)
        samples.append(time.perf_counter_ns() - started)
        matched += len(matches)
    samples.sort()
    return {
        "match_median_us": statistics.median(samples) / 1000,
        "match_p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "match_mean_matches": matched / iterations,
        "match_rules": float(len(ruleset)),
    }
