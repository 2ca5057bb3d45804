"""Per-file `[vars]`: named constants that the rules of one file read as `{ var = "vars.x" }`.

Substituted when the file loads, before anything compiles: the compiled condition or
template holds the value itself, so an event carrying a `vars` field cannot change it, and
a switch such as `forward_team_replies = false` costs nothing per event.
"""

from __future__ import annotations

import re
from typing import Any

from rules.errors import Problem
from rules.logic import escape_pointer

PREFIX = "vars."
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def vars_problems(table: Any) -> list[str]:
    """Why the `[vars]` table of a file is unusable, one message per problem."""
    if not isinstance(table, dict):
        return ["vars: must be a table ([vars]) of name = value"]
    out = []
    for name, value in table.items():
        if not _NAME.fullmatch(name):
            out.append(f"vars.{name}: a var name is a letter or _ then letters, digits or _")
        elif not _constant(value):
            out.append(
                f"vars.{name}: must be a string, number, boolean or an array of those, "
                f"got {value!r}"
            )
    return out


def _constant(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, str | int | float | bool) for v in value)
    return isinstance(value, str | int | float | bool)


def substitute(node: Any, values: dict[str, Any], pointer: str = "") -> tuple[Any, list[Problem]]:
    """`node` with every `{"var": "vars.NAME"}` replaced by the value of NAME, and a problem
    for each name the file does not define (a typo must not read as null)."""
    problems: list[Problem] = []
    return _walk(node, values, pointer, problems), problems


def _walk(node: Any, values: dict[str, Any], pointer: str, problems: list[Problem]) -> Any:
    if isinstance(node, list):
        return [_walk(v, values, f"{pointer}/{i}", problems) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and "var" in node:
        path = node["var"]
        if isinstance(path, list) and path:
            path = path[0]
        if isinstance(path, str) and (path == "vars" or path.startswith(PREFIX)):
            name = path[len(PREFIX) :]
            if name in values:
                return values[name]
            known = ", ".join(sorted(values)) or "(none: add a [vars] table)"
            problems.append(
                Problem(f"{pointer}/var", f'unknown var "{path}"; this file defines: {known}')
            )
            return None
    return {
        k: _walk(v, values, f"{pointer}/{escape_pointer(k)}", problems) for k, v in node.items()
    }
