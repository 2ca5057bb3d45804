"""Errors raised by the gateway package; the tree is drawn in `rules.errors`.

HookgateError (rules.errors)
├── ConfigError     settings cannot be loaded or are contradictory
└── StoreError      a storage backend failed; raised `from` the driver's own error
"""

from __future__ import annotations

from rules.errors import HookgateError


class ConfigError(HookgateError):
    """Settings cannot be loaded (bad TOML, bad value, impossible combination)."""


class StoreError(HookgateError):
    """A storage backend failed; the driver's exception is the `__cause__`."""


class NotFound(HookgateError):
    """A record asked for by id does not exist."""


class InvalidInput(HookgateError):
    """A request or command argument failed validation (422 over HTTP)."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)
