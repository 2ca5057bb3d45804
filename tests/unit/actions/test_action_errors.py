"""The actions error tree hangs under HookgateError and carries short reasons."""

from __future__ import annotations

import pickle

from actions.errors import ActionError, SignatureError, UnsafeTargetError
from rules.errors import HookgateError


def test_tree() -> None:
    assert issubclass(ActionError, HookgateError)
    assert issubclass(SignatureError, ActionError)
    assert issubclass(UnsafeTargetError, ActionError)
    assert not issubclass(SignatureError, UnsafeTargetError)


def test_reasons_are_the_message() -> None:
    refusal = UnsafeTargetError("host 10.0.0.1 is a private address")
    assert refusal.reason == str(refusal) == "host 10.0.0.1 is a private address"
    bad = SignatureError("no matching signature")
    assert bad.reason == str(bad) == "no matching signature"


def test_errors_survive_pickling_with_their_reason() -> None:
    copy = pickle.loads(pickle.dumps(SignatureError("stale")))
    assert isinstance(copy, SignatureError)
    assert copy.reason == "stale"
