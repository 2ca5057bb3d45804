"""docs/rules.md stays true: its rule files load, its example tables evaluate as written."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rules import OPERATORS, Logic, RuleSet, Template, load_dir

DOC = Path(__file__).parents[3] / "docs" / "rules.md"
TEXT = DOC.read_text(encoding="utf-8")
LOGIC = Logic(clock=lambda: datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC))
ENV = {"CRM_WEBHOOK_SECRET": "x", "SMS_WEBHOOK_SECRET": "y"}


def _rows(heading: str) -> list[list[str]]:
    """The first backticked text of each cell, for the table rows of one section."""
    section = TEXT.split(heading, 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = line.strip("|").split(" | ")
            rows.append([m.group(1) if (m := re.search(r"`([^`]*)`", c)) else c for c in cells])
    return rows


def _same(actual: Any, expected: Any) -> bool:
    return json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_every_toml_example_loads_without_errors(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", TEXT, re.S)
    assert len(blocks) >= 5
    for i, block in enumerate(blocks):
        (tmp_path / f"{i:02}.toml").write_text(block, encoding="utf-8")
    result = load_dir(tmp_path, action_types=("webhook", "forward"), env=ENV, logic=LOGIC)
    assert [str(e) for e in result.errors] == []
    assert len(result.rules) == len(blocks)


def test_the_first_rule_does_what_the_doc_says(tmp_path: Path) -> None:
    first = re.findall(r"```toml\n(.*?)```", TEXT, re.S)[0]
    (tmp_path / "crm.toml").write_text(first, encoding="utf-8")
    result = load_dir(tmp_path, action_types=("webhook",), env=ENV, logic=LOGIC)
    event = {"event_type": "job_completed", "phone": "+14155552671", "name": "Ada"}
    (match,) = RuleSet(result.rules, logic=LOGIC).match("acme-crm", event)
    body = match.rule.actions[0].body
    assert body is not None
    assert body.render(event) == {"to": "+14155552671", "text": "Thanks Ada!"}


@pytest.mark.parametrize("heading", ["### Standard operators", "### Extra operators"])
def test_operator_tables_evaluate_as_written(heading: str) -> None:
    rows = _rows(heading)
    assert rows
    for _name, logic, data, result in rows:
        actual = LOGIC.evaluate(json.loads(logic), json.loads(data))
        assert _same(actual, json.loads(result)), (logic, data, result, actual)


def test_template_table_renders_as_written() -> None:
    rows = [row for row in _rows("## Body templates") if row[1].startswith("{")]
    assert len(rows) == 5
    for template, event, body in rows:
        source = tomllib.loads(f"body = {template}")["body"]
        rendered = Template.compile(source, logic=LOGIC).render(json.loads(event))
        assert _same(rendered, json.loads(body)), (template, rendered)


def test_json_to_toml_table_is_right() -> None:
    rows = _rows("## Conditions (`when`)")
    assert len(rows) == 3
    for as_json, as_toml in rows:
        assert tomllib.loads(f"when = {as_toml}")["when"] == json.loads(as_json)


def test_every_operator_is_documented() -> None:
    documented = set(re.findall(r"^\| `([^`]+)`", TEXT, re.M))
    assert documented >= LOGIC.operator_names
    for name in LOGIC.operator_names:
        assert f"`{name}`" in TEXT, name
    for name in OPERATORS:
        assert f"**`{name}(" in TEXT, name
