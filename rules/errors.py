"""Errors of hookgate, rooted here because `rules` sits at the bottom of the import graph.

    HookgateError
    ├── RuleError            a rule file or rule is invalid (file, rule_id, message)
    ├── LogicError           a JSON-Logic expression or template is invalid (problems)
    ├── EvaluationError      an expression failed while evaluating against an event
    │   (actions.errors)
    ├── ActionError          an action could not be built or sent
    │   ├── SignatureError   an inbound signature is missing, malformed or wrong
    │   └── UnsafeTargetError  a URL fails the SSRF guard
    │   (gateway.errors)
    ├── ConfigError          settings cannot be loaded
    └── StoreError           a storage backend failed

Each package translates the errors of the libraries it wraps into this tree at its boundary:
in `rules`, every `datalogic_py` error becomes a `LogicError` or an `EvaluationError` in
`rules/logic.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class HookgateError(Exception):
    """Root of every error hookgate raises on purpose."""


class RuleError(HookgateError):
    """A rule file or one rule in it is invalid; `str()` is `file:rule-id: message`."""

    def __init__(self, file: str, rule_id: str | None, message: str) -> None:
        self.file = file
        self.rule_id = rule_id
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}:{self.rule_id or '-'}: {self.message}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in an expression, located by an RFC 6901 JSON Pointer into it."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.message} (at {self.pointer})" if self.pointer else self.message


class LogicError(HookgateError):
    """A JSON-Logic expression or a template cannot be compiled; `problems` lists every issue.

    Raised at load time, so that an operator learns about a typo before an event arrives.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class EvaluationError(HookgateError):
    """An expression failed at evaluation time (e.g. a bad regex built from event data)."""

    def __init__(self, message: str, operator: str | None = None) -> None:
        self.operator = operator
        super().__init__(message)
