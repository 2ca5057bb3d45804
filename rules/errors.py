"""Errors of hookgate, rooted here because `rules` sits at the bottom of the import graph.

    HookgateError
    ├── RuleError            a rule file or rule is invalid (file, rule_id, message)
    │   (actions.errors)
    ├── ActionError          an action could not be built or sent
    │   ├── SignatureError   an inbound signature is missing, malformed or wrong
    │   └── UnsafeTargetError  a URL fails the SSRF guard
    │   (gateway.errors)
    ├── ConfigError          settings cannot be loaded
    └── StoreError           a storage backend failed

Each package translates the errors of the libraries it wraps into this tree at its boundary.
"""

from __future__ import annotations


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
