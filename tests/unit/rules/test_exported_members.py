"""The public surface of `rules`: a sorted `__all__` whose every name exists."""

from __future__ import annotations

import types

import rules


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical."""
    group = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return group, name


def test_all_is_sorted_and_unique() -> None:
    assert rules.__all__ == sorted(set(rules.__all__), key=_isort_key)


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(rules).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(rules.__all__)


def test_every_exported_name_exists() -> None:
    missing = [name for name in rules.__all__ if not hasattr(rules, name)]
    assert missing == []


def test_public_classes_and_functions_say_they_belong_to_rules() -> None:
    for name in rules.__all__:
        member = getattr(rules, name)
        module = getattr(member, "__module__", None)
        if module is not None and callable(member):
            assert module.startswith("rules."), (name, module)


def test_the_promised_names_are_exported() -> None:
    promised = {
        "Action", "Condition", "EventData", "HookgateError", "LoadResult", "Logic", "Match",
        "OPERATORS", "Rule", "RuleError", "RuleSet", "Template", "compile", "evaluate",
        "load_dir", "load_file",
    }  # fmt: skip
    assert promised <= set(rules.__all__)
