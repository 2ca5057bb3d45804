"""No function over 60 lines where requests and deliveries are handled (gateway/http/,
gateway/delivery/, actions/): a long one is split into the steps it takes, as the ingest
endpoint's handler was."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LIMIT = 60
ROOMS = ("gateway/http", "gateway/delivery", "actions")


def long_functions(root: Path) -> list[str]:
    """`path:line name (lines)` of every function under `root` longer than LIMIT."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LIMIT:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines})")
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_no_function_is_over_sixty_lines(room: str) -> None:
    assert long_functions(REPO / room) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{n} = {n}" for n in range(LIMIT))
    (tmp_path / "m.py").write_text(f"async def f() -> None:\n{body}\n")
    assert long_functions(tmp_path) == [f"m.py:1 f ({LIMIT + 1})"]
