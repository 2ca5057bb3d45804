"""Per-file [vars]: substituted at load, unknown names are load errors, events cannot spoof."""

from __future__ import annotations

from pathlib import Path

from rules import RuleSet, load_dir

RULE = """
[[rules]]
id = "team"
when = {{ and = [{{ var = "vars.{name}" }}, {{ "==" = [{{ var = "kind" }}, "team"] }}] }}
  [[rules.actions]]
  type = "webhook"
  url = "https://x.example/h"
  body = {{ label = {{ var = "vars.label" }}, kinds = {{ var = "vars.kinds" }} }}
"""


def _load(tmp_path: Path, text: str, name: str = "a.toml"):  # type: ignore[no-untyped-def]
    (tmp_path / name).write_text(text, encoding="utf-8")
    return load_dir(tmp_path, action_types=("webhook", "forward"))


def test_vars_switch_turns_a_rule_on_and_off(tmp_path: Path) -> None:
    on = '[vars]\nswitch = true\nlabel = "crm"\nkinds = ["a", "b"]\n'
    result = _load(tmp_path, on + RULE.format(name="switch"))
    assert result.errors == ()
    ruleset = RuleSet(result.rules)
    (match,) = ruleset.match("app", {"kind": "team"})
    body = match.rule.actions[0].body
    assert body is not None and body.is_constant
    assert body.render({"kind": "team"}) == {"label": "crm", "kinds": ["a", "b"]}

    off = _load(tmp_path, on.replace("true", "false") + RULE.format(name="switch"))
    assert off.errors == ()
    assert RuleSet(off.rules).match("app", {"kind": "team"}) == []
    assert off.version != result.version


def test_an_event_field_named_vars_cannot_spoof_a_constant(tmp_path: Path) -> None:
    text = '[vars]\nswitch = false\nlabel = "crm"\nkinds = []\n' + RULE.format(name="switch")
    result = _load(tmp_path, text)
    assert result.errors == ()
    spoof = {"kind": "team", "vars": {"switch": True, "label": "evil"}}
    assert RuleSet(result.rules).match("app", spoof) == []


def test_unknown_var_is_a_load_error_naming_file_rule_and_known_names(tmp_path: Path) -> None:
    text = '[vars]\nswitch = true\nlabel = "crm"\nkinds = []\n' + RULE.format(name="swich")
    result = _load(tmp_path, text)
    assert result.rules == ()
    (error,) = result.errors
    assert str(error) == (
        f'{tmp_path / "a.toml"}:team: when: unknown var "vars.swich"; this file defines: '
        "kinds, label, switch (at /and/0/var)"
    )


def test_vars_are_per_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[vars]\nswitch = true\nlabel = "x"\nkinds = []\n')
    result = _load(tmp_path, RULE.format(name="switch"), name="b.toml")
    messages = [e.message for e in result.errors]
    assert any(
        'unknown var "vars.switch"' in m and "(none: add a [vars] table)" in m for m in messages
    )
    assert any('unknown var "vars.label"' in m for m in messages)


def test_bad_vars_tables_are_file_errors(tmp_path: Path) -> None:
    result = _load(tmp_path, '[vars]\nnested = { a = 1 }\n"9bad" = 1\n' + RULE.format(name="x"))
    messages = [str(e) for e in result.errors]
    assert (
        f"{tmp_path / 'a.toml'}:-: vars.nested: must be a string, number, boolean "
        "or an array of those, got {'a': 1}" in messages
    )
    assert any("vars.9bad: a var name is" in m for m in messages)
    assert _load(tmp_path, "vars = 3\n" + RULE.format(name="x")).errors[0].message == (
        "vars: must be a table ([vars]) of name = value"
    )


def test_the_shipped_messaging_example_has_a_forward_team_replies_switch(tmp_path: Path) -> None:
    example = Path(__file__).parents[3] / "examples" / "rules.d" / "messaging.toml"
    text = example.read_text(encoding="utf-8")
    team = {"type": "message.outbound", "sender": {"type": "user"}}
    on = _load(tmp_path, text)
    assert on.errors == ()
    matched = [
        m.rule.id for m in RuleSet(on.rules).match("chekkit", team, event_type="message.outbound")
    ]
    assert matched == ["forward-team-replies"]
    assert "forward_team_replies = true" in text
    off = _load(
        tmp_path, text.replace("forward_team_replies = true", "forward_team_replies = false")
    )
    assert off.errors == ()
    assert RuleSet(off.rules).match("chekkit", team, event_type="message.outbound") == []
