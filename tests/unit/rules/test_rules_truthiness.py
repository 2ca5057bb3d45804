"""The truthiness rewrite agrees with a reference JavaScript-semantics evaluator.

Random (seeded, so reproducible) trees of the operators that consume truthiness, over data
full of empty objects, are evaluated both ways; values and condition results must agree.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from rules import Logic
from rules.truthiness import NON_OBJECT_CORE_OPERATORS, TruthinessRewriter

VARS = ("a", "b", "c")
VALUES: tuple[Any, ...] = ({}, {"k": 1}, [], [0], 0, 1, "", "s", None, True, False)


def js_truthy(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    if isinstance(value, list | str):
        return len(value) > 0
    return bool(value)


def reference(node: Any, data: Any) -> Any:
    """JsonLogic as json-logic-js evaluates it, for the operators generated below."""
    if isinstance(node, list):
        return [reference(item, data) for item in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((op, args),) = node.items()
    if op == "var":
        return data.get(args) if isinstance(data, dict) else None
    if op == "if":
        i = 0
        while i + 1 < len(args):
            if js_truthy(reference(args[i], data)):
                return reference(args[i + 1], data)
            i += 2
        return reference(args[i], data) if i < len(args) else None
    if op in ("and", "or"):
        value = None
        for arg in args:
            value = reference(arg, data)
            if js_truthy(value) == (op == "or"):
                return value
        return value
    if op in ("!", "!!"):
        return js_truthy(reference(args[0], data)) == (op == "!!")
    items = reference(args[0], data)
    items = items if isinstance(items, list) else []
    tests = [js_truthy(reference(args[1], item)) for item in items]
    if op == "filter":
        return [item for item, ok in zip(items, tests, strict=True) if ok]
    if op == "some":
        return any(tests)
    if op == "all":
        return bool(tests) and all(tests)
    assert op == "none"
    return not any(tests)


def generate(rng: random.Random, depth: int) -> Any:
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice([{"var": rng.choice(VARS)}, {}, 0, 1, "", "x", [], [0], None, True])
    op = rng.choice(["if", "and", "or", "!", "!!", "filter", "some", "all", "none"])
    if op in ("!", "!!"):
        return {op: [generate(rng, depth - 1)]}
    if op in ("filter", "some", "all", "none"):
        return {op: [{"var": "items"}, generate(rng, depth - 1)]}
    return {op: [generate(rng, depth - 1) for _ in range(rng.randint(1, 4))]}


def random_data(rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {name: rng.choice(VALUES) for name in VARS}
    data["items"] = [{name: rng.choice(VALUES) for name in VARS} for _ in range(3)]
    return data


@pytest.mark.parametrize("seed", range(4))
def test_rewritten_logic_matches_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    logic = Logic()
    for _ in range(250):
        tree = generate(rng, 4)
        data = random_data(rng)
        expected = reference(tree, data)
        actual = logic.evaluate(tree, data)
        assert json.dumps(actual) == json.dumps(expected), tree
        assert logic.compile(tree)(data) is js_truthy(expected), tree


def test_operands_that_cannot_be_objects_are_left_alone() -> None:
    rewriter = TruthinessRewriter(NON_OBJECT_CORE_OPERATORS)
    plain = {"and": [{"==": [{"var": "a"}, 1]}, {"!": [{"<": [1, 2]}]}, {"var": "b"}]}
    assert rewriter.condition({"==": [{"var": "a"}, 1]}) == {"==": [{"var": "a"}, 1]}
    assert rewriter.value(plain) == plain  # the last operand of and/or is never tested
    assert rewriter.value({"if": [{"var": "a"}, 1, 2]}) == {
        "if": [{"or": [{"var": "a"}, {"===": [{"var": "a"}, {}]}]}, 1, 2]
    }
