"""Rewrite a JSON-Logic tree so that datalogic applies standard (JavaScript) truthiness.

Standard JsonLogic treats an empty object `{}` as truthy (only `[]` is special-cased falsy);
datalogic treats it as falsy under every truthiness setting. Its strict equality tells an
empty object apart natively (`{"===": [x, {}]}` is true only for `{}`), so at every position
that consumes truthiness (conditions of `if`, operands of `!`, `!!`, `and`, `or`, predicates
of `filter`, `all`, `some`, `none`) an operand that may be an object is replaced by an
expression that is truthy exactly when the operand is truthy in JavaScript.

The rewrite runs once, at compile time. Operands that cannot be objects (comparisons,
arithmetic, literals, `cat`, ...) are left alone, so the common conditions compile to exactly
what the operator wrote and the hot path pays nothing.
"""

from __future__ import annotations

from typing import Any

# Core operators whose result is never a JSON object (arrays and scalars only).
NON_OBJECT_CORE_OPERATORS = frozenset(
    {
        "!", "!!", "!=", "!==", "%", "*", "+", "-", "/", "<", "<=", "==", "===", ">", ">=",
        "all", "cat", "filter", "in", "map", "max", "merge", "min", "missing", "missing_some",
        "none", "some", "substr",
    }
)  # fmt: skip

_IF = frozenset({"if", "?:"})
_PATH = frozenset({"var", "val"})
_PREDICATE = frozenset({"filter", "all", "some", "none"})
_NEGATION = frozenset({"!", "!!"})

# Truthy exactly when the current item is truthy in JavaScript; used inside `some`.
_ITEM_TRUTHY = {"or": [{"var": ""}, {"===": [{"var": ""}, {}]}]}


class TruthinessRewriter:
    """Applies the rewrite; `non_object_operators` names every operator known to never
    return an object (the core ones above plus the extras)."""

    __slots__ = ("_non_object",)

    def __init__(self, non_object_operators: frozenset[str]) -> None:
        self._non_object = non_object_operators

    def value(self, node: Any) -> Any:
        """`node` rewritten so that it evaluates to its standard JsonLogic value."""
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((op, args),) = node.items()
        if not isinstance(args, list):
            if op in _NEGATION:
                return {op: self.truthy(args, self.value(args))}
            return {op: self.value(args)}
        new = [self.value(arg) for arg in args]
        if op in _IF:
            for i in range(0, len(args) - 1, 2):
                new[i] = self.truthy(args[i], new[i])
        elif op in _NEGATION or op in _PREDICATE:
            position = 0 if op in _NEGATION else 1
            if len(args) > position:
                new[position] = self.truthy(args[position], new[position])
        elif op in ("and", "or"):
            return self._chain(op, args, new)
        return {op: new}

    def condition(self, node: Any) -> Any:
        """`node` rewritten so that its truthiness (as datalogic sees it) is the standard one."""
        return self.truthy(node, self.value(node))

    def truthy(self, original: Any, rewritten: Any) -> Any:
        """An expression whose datalogic truthiness is the JavaScript truthiness of `original`
        (`rewritten` is `original` already rewritten)."""
        if not self.may_be_object(original):
            return rewritten
        if isinstance(original, dict) and len(original) != 1:
            return True  # a literal object is always truthy
        if _is_plain_path(original):
            # Cheapest form: reading a path twice costs less than iterating.
            return {"or": [rewritten, {"===": [rewritten, {}]}]}
        # Evaluate a complex operand once by binding it as the single item of `some`.
        return {"some": [[rewritten], _ITEM_TRUTHY]}

    def may_be_object(self, node: Any) -> bool:
        """Whether `node` might evaluate to a JSON object (conservative: unknown → True)."""
        if not isinstance(node, dict):
            return False
        if len(node) != 1:
            return True
        ((op, args),) = node.items()
        items = args if isinstance(args, list) else [args]
        if op in _IF:
            last = len(items) - 1
            return any(
                self.may_be_object(item) for i, item in enumerate(items) if i % 2 == 1 or i == last
            )
        if op in ("and", "or"):
            return any(self.may_be_object(item) for item in items)
        return op not in self._non_object

    def _chain(self, op: str, args: list[Any], new: list[Any]) -> Any:
        """`and`/`or` returning the deciding operand's value, with standard truthiness.

        The last operand is returned as it is, so only the others are tested. Runs of operands
        that cannot be objects stay native `and`/`or` calls.
        """
        if len(args) < 2 or not any(self.may_be_object(arg) for arg in args[:-1]):
            return {op: new}
        result = new[-1]
        for original, rewritten in zip(reversed(args[:-1]), reversed(new[:-1]), strict=True):
            if self.may_be_object(original):
                test = self.truthy(original, rewritten)
                if op == "and":
                    result = {"if": [test, result, rewritten]}
                else:
                    result = {"if": [test, rewritten, result]}
            elif isinstance(result, dict) and list(result) == [op]:
                result = {op: [rewritten, *result[op]]}
            else:
                result = {op: [rewritten, result]}
        return result


def _is_plain_path(node: dict[str, Any]) -> bool:
    """A `var`/`val` whose arguments are literals: reading it twice is cheap and pure."""
    ((op, args),) = node.items()
    if op not in _PATH:
        return False
    items = args if isinstance(args, list) else [args]
    return not any(isinstance(item, dict | list) for item in items)
