"""Rule files: what loads, and every kind of error as `file:rule-id: message`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rules import Action, LoadResult, Rule, RuleError, RuleSet, Template, load_dir, load_file

ACTION_TYPES = ("webhook", "forward")
ENV = {"CRM_WEBHOOK_SECRET": "s3cret", "EMPTY_SECRET": ""}

GOOD = """
[[rules]]
id = "job-completed-thank-you"
description = "Thank the customer when a job is completed"
apps = ["acme-crm"]
event_types = ["job_completed"]
when = { "!!" = { var = "phone" } }
enabled = true

  [[rules.actions]]
  type = "webhook"
  url = "https://crm.example.com/hooks/sms"
  secret_env = "CRM_WEBHOOK_SECRET"
  retry = "none"
  body = { to = { var = "phone" }, text = { cat = ["Thanks ", { var = "name" }, "!"] } }
"""

ACTION = '\n  [[rules.actions]]\n  type = "webhook"\n  url = "https://example.com/hook"\n'


def load(tmp_path: Path, **files: str) -> LoadResult:
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text, encoding="utf-8")
    return load_dir(tmp_path, action_types=ACTION_TYPES, env=ENV)


def rule(body: str, rule_id: str = "r1", actions: str = ACTION) -> str:
    return f'[[rules]]\nid = "{rule_id}"\n{body}\n{actions}'


def only_error(result: LoadResult) -> str:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return str(result.errors[0])


def assert_shape(message: str, file: str, rule_id: str, *words: str) -> None:
    """`file:rule-id: message`, the message naming what is wrong."""
    match = re.fullmatch(r"(?P<file>[^:]+):(?P<id>[^:\s]+): (?P<message>.+)", message, re.S)
    assert match, message
    assert match["file"] == file, message
    assert match["id"] == rule_id, message
    for word in words:
        assert word in match["message"], f"{word!r} not in {message!r}"


# -- what loads -------------------------------------------------------------------------------


def test_the_design_example_loads(tmp_path: Path) -> None:
    result = load(tmp_path, crm=GOOD)
    assert result.ok and result.errors == ()
    assert result.files == (str(tmp_path / "crm.toml"),)
    (loaded,) = result.rules
    assert loaded.id == "job-completed-thank-you"
    assert loaded.apps == frozenset({"acme-crm"})
    assert loaded.event_types == frozenset({"job_completed"})
    assert loaded.when == {"!!": {"var": "phone"}}
    assert loaded.source == str(tmp_path / "crm.toml")
    assert loaded.condition is not None and loaded.condition({"phone": "1"})
    (action,) = loaded.actions
    assert action == Action(
        type="webhook",
        url="https://crm.example.com/hooks/sms",
        secret_env="CRM_WEBHOOK_SECRET",
        retry="none",
        body=Template.compile(
            {"to": {"var": "phone"}, "text": {"cat": ["Thanks ", {"var": "name"}, "!"]}}
        ),
    )
    assert action.body is not None
    assert action.body.render({"phone": "+1", "name": "Ada"}) == {"to": "+1", "text": "Thanks Ada!"}


def test_defaults_and_every_action_key(tmp_path: Path) -> None:
    text = """
[[rules]]
id = "all-keys"
  [[rules.actions]]
  type = "forward"
  url = "http://localhost:9000/in"
  retry = [5, 30.5, 0]
  timeout_seconds = 3
  disable_after = 2
  headers = { "X-Api-Key" = "k", "Accept" = "application/json" }
"""
    (loaded,) = load(tmp_path, a=text).rules
    assert loaded == Rule(id="all-keys", actions=loaded.actions, source=loaded.source)
    assert loaded.enabled and loaded.when is None and loaded.condition is None
    assert loaded.actions == (
        Action(
            type="forward",
            url="http://localhost:9000/in",
            retry=(5.0, 30.5, 0.0),
            timeout_seconds=3.0,
            disable_after=2,
            headers=(("X-Api-Key", "k"), ("Accept", "application/json")),
        ),
    )


def test_files_load_in_name_order_and_rules_in_file_order(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        b=rule("", "b1") + rule("", "b2"),
        a=rule("", "a1"),
        c=rule("", "c1"),
    )
    (tmp_path / ".#a.toml").write_text("not toml [", encoding="utf-8")  # editor temp file
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    assert [r.id for r in result.rules] == ["a1", "b1", "b2", "c1"]
    assert [Path(f).name for f in result.files] == ["a.toml", "b.toml", "c.toml"]
    again = load_dir(tmp_path, action_types=ACTION_TYPES, env=ENV)
    assert again.errors == () and again.digest == result.digest


def test_version_and_digest(tmp_path: Path) -> None:
    first = load(tmp_path, a=GOOD)
    assert first.version == RuleSet(first.rules).version
    assert re.fullmatch(r"[0-9a-f]{16}", first.version)
    same = load(tmp_path, a=GOOD + "\n# a comment\n")
    assert same.version == first.version and same.digest != first.digest
    changed = load(tmp_path, a=GOOD.replace("acme-crm", "other"))
    assert changed.version != first.version


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "one.toml"
    path.write_text(GOOD, encoding="utf-8")
    result = load_file(path, action_types=ACTION_TYPES, env=ENV)
    assert [r.id for r in result.rules] == ["job-completed-thank-you"]


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = load_dir(missing, action_types=ACTION_TYPES)
    assert_shape(only_error(result), str(missing), "-", "not a directory")
    assert load_dir(missing, action_types=ACTION_TYPES, missing_ok=True).errors == ()


def test_env_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.toml").write_text(GOOD, encoding="utf-8")
    monkeypatch.delenv("CRM_WEBHOOK_SECRET", raising=False)
    assert not load_dir(tmp_path, action_types=ACTION_TYPES).ok
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", "x")
    assert load_dir(tmp_path, action_types=ACTION_TYPES).ok


# -- every error kind -------------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    result = load(tmp_path, bad='[[rules]]\nid = "x"\nwhen = {\n')
    assert_shape(only_error(result), str(tmp_path / "bad.toml"), "-", "invalid TOML", "line 3")


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "bin.toml").write_bytes(b'id = "\xff"')
    result = load_dir(tmp_path, action_types=ACTION_TYPES)
    assert_shape(only_error(result), str(tmp_path / "bin.toml"), "-", "not UTF-8")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    result = load(tmp_path, f='[[rule]]\nid = "x"\n')
    assert_shape(
        only_error(result), str(tmp_path / "f.toml"), "-", '"rule"', 'did you mean "rules"'
    )


def test_rules_must_be_an_array_of_tables(tmp_path: Path) -> None:
    result = load(tmp_path, f='[rules]\nid = "x"\n')
    assert_shape(only_error(result), str(tmp_path / "f.toml"), "-", "[[rules]]")


def test_unknown_key_in_a_rule(tmp_path: Path) -> None:
    result = load(tmp_path, f=rule("whenn = true"))
    assert_shape(
        only_error(result), str(tmp_path / "f.toml"), "r1", 'unknown key "whenn"', '"when"', "id"
    )


def test_unknown_key_in_an_action(tmp_path: Path) -> None:
    actions = '[[rules.actions]]\ntype = "webhook"\nurl = "https://x.example"\nuri = "y"\n'
    result = load(tmp_path, f=rule("", actions=actions))
    assert_shape(only_error(result), str(tmp_path / "f.toml"), "r1", "actions[0]", '"uri"', '"url"')


def test_missing_id(tmp_path: Path) -> None:
    result = load(tmp_path, f="[[rules]]\ndescription = 'x'\n" + ACTION)
    assert_shape(only_error(result), str(tmp_path / "f.toml"), "-", "id: missing", "rule #1")


@pytest.mark.parametrize("bad_id", ["12", '"has space"', '"target:1"', '""', '"-x"'])
def test_invalid_id(tmp_path: Path, bad_id: str) -> None:
    result = load(tmp_path, f=f"[[rules]]\nid = {bad_id}\n" + ACTION)
    assert_shape(only_error(result), str(tmp_path / "f.toml"), "-", "id: must be", "letters")


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    result = load(tmp_path, a=rule("", "same"), b=rule("", "same"))
    first, second = str(tmp_path / "a.toml"), str(tmp_path / "b.toml")
    assert_shape(only_error(result), second, "same", "duplicate rule id", first)
    assert [r.source for r in result.rules] == [first]


def test_duplicate_ids_in_one_file(tmp_path: Path) -> None:
    result = load(tmp_path, a=rule("", "same") + rule("", "same"))
    assert_shape(only_error(result), str(tmp_path / "a.toml"), "same", "earlier in this file")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('apps = "acme-crm"', ("apps: must be a list", 'write apps = ["acme-crm"]')),
        ("apps = [1]", ("apps: must be a list of app names",)),
        ('event_types = [""]', ("event_types: must be a list of event type names",)),
        ('enabled = "yes"', ("enabled: must be true or false",)),
        ("description = 3", ("description: must be a string", "an integer")),
        ("when = '{\"==\": [1, 1]}'", ("when: must be a JSON-Logic expression", "inline table")),
        ("when = { at = 2026-01-01 }", ("when:", "not a JSON value", "strings")),
    ],
)
def test_wrong_types_in_a_rule(tmp_path: Path, body: str, words: tuple[str, ...]) -> None:
    result = load(tmp_path, f=rule(body))
    assert_shape(only_error(result), str(tmp_path / "f.toml"), "r1", *words)


def test_unknown_operator_in_when_has_its_pointer(tmp_path: Path) -> None:
    result = load(tmp_path, f=rule('when = { if = [true, { vr = "x" }, 1] }'))
    assert_shape(
        only_error(result),
        str(tmp_path / "f.toml"),
        "r1",
        "when: unknown operator `vr`",
        "`var`",
        "(at /if/1)",
    )


def test_bad_extra_operator_use_in_when(tmp_path: Path) -> None:
    result = load(tmp_path, f=rule("when = { regex_match = ['(', { var = 'x' }] }"))
    assert_shape(
        only_error(result),
        str(tmp_path / "f.toml"),
        "r1",
        "when:",
        "invalid regular expression",
        "/regex_match/0",
    )


def test_unknown_operator_in_a_template_has_its_pointer(tmp_path: Path) -> None:
    actions = ACTION + '  body = { text = { cat = ["a", { vr = "x" }] } }\n'
    result = load(tmp_path, f=rule("", actions=actions))
    assert_shape(
        only_error(result),
        str(tmp_path / "f.toml"),
        "r1",
        "actions[0].body: unknown operator `vr`",
        "(at /text/cat/1)",
    )


def test_invalid_template(tmp_path: Path) -> None:
    actions = ACTION + "  body = { sent = 2026-01-01T00:00:00Z, n = nan }\n"
    result = load(tmp_path, f=rule("", actions=actions))
    messages = [str(e) for e in result.errors]
    assert len(messages) == 2
    assert_shape(messages[0], str(tmp_path / "f.toml"), "r1", "actions[0].body", "/sent")
    assert_shape(messages[1], str(tmp_path / "f.toml"), "r1", "actions[0].body", "/n", "nan")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "/relative/path", "https://", "example.com/hook", "http://a b.com/",
     "https://host:99999/", ""],
)  # fmt: skip
def test_bad_urls(tmp_path: Path, url: str) -> None:
    actions = f'[[rules.actions]]\ntype = "webhook"\nurl = "{url}"\n'
    result = load(tmp_path, f=rule("", actions=actions))
    assert_shape(
        only_error(result), str(tmp_path / "f.toml"), "r1", "actions[0].url", "http", "https"
    )


def test_missing_url_and_type(tmp_path: Path) -> None:
    result = load(tmp_path, f=rule("", actions='[[rules.actions]]\nretry = "none"\n'))
    messages = [str(e) for e in result.errors]
    assert len(messages) == 2
    assert_shape(messages[0], str(tmp_path / "f.toml"), "r1", "actions[0].type: missing")
    assert_shape(messages[1], str(tmp_path / "f.toml"), "r1", "actions[0].url: missing")


def test_unknown_action_type_lists_the_known_ones(tmp_path: Path) -> None:
    actions = '[[rules.actions]]\ntype = "sms"\nurl = "https://x.example"\n'
    result = load(tmp_path, f=rule("", actions=actions))
    assert_shape(
        only_error(result),
        str(tmp_path / "f.toml"),
        "r1",
        "actions[0].type: unknown action type 'sms'",
        "known types: forward, webhook",
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"NOT_SET_ANYWHERE"', ("environment variable NOT_SET_ANYWHERE is not set",)),
        ('"EMPTY_SECRET"', ("EMPTY_SECRET is set but empty",)),
        ('"not a name"', ("must be the name of an environment variable",)),
    ],
)
def test_secret_env(tmp_path: Path, value: str, words: tuple[str, ...]) -> None:
    result = load(tmp_path, f=rule("", actions=ACTION + f"  secret_env = {value}\n"))
    assert_shape(
        only_error(result), str(tmp_path / "f.toml"), "r1", "actions[0].secret_env", *words
    )


@pytest.mark.parametrize("retry", ['"always"', "[]", "[-1]", '[1, "x"]', "[true]", "3"])
def test_invalid_retry(tmp_path: Path, retry: str) -> None:
    result = load(tmp_path, f=rule("", actions=ACTION + f"  retry = {retry}\n"))
    assert_shape(
        only_error(result),
        str(tmp_path / "f.toml"),
        "r1",
        "actions[0].retry",
        '"none", "standard"',
        "non-empty list",
    )


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("timeout_seconds = 0", ("actions[0].timeout_seconds", "> 0")),
        ('timeout_seconds = "5"', ("actions[0].timeout_seconds",)),
        ("disable_after = 0", ("actions[0].disable_after", ">= 1")),
        ("disable_after = 1.5", ("actions[0].disable_after", "integer")),
        ('headers = ["X: y"]', ("actions[0].headers", "table")),
        ('headers = { "Bad Name" = "v" }', ("actions[0].headers", "not a valid header name")),
        ('headers = { "X-Ok" = 1 }', ("actions[0].headers.X-Ok", "string")),
        ('headers = { "X-Ok" = "a\\r\\nInjected: 1" }', ("line breaks",)),
        ('delay = "soon"', ("actions[0].delay", "90s, 15m, 2h")),
        ("delay = -5", ("actions[0].delay", ">= 0")),
        (
            'cancel_on = { event_types = ["x"], match = "id" }',
            ("actions[0].cancel_on", "only a delayed action"),
        ),
        (
            'delay = "1h"\n  cancel_on = { event_types = [], match = "id" }',
            ("actions[0].cancel_on.event_types", "non-empty list"),
        ),
        (
            'delay = "1h"\n  cancel_on = { event_types = ["x"], match = "a..b" }',
            ("actions[0].cancel_on.match", "dotted path"),
        ),
        (
            'delay = "1h"\n  cancel_on = { event_types = ["x"], match = "id", on = 1 }',
            ("actions[0].cancel_on", 'unknown key "on"'),
        ),
        ('ordering = "lifo"', ("actions[0].ordering", 'must be "fifo"', "'lifo'")),
        ("ordering = true", ("actions[0].ordering", 'must be "fifo"')),
        (
            'ordering_key = { var = "customerId" }',
            ("actions[0].ordering_key", 'set ordering = "fifo"'),
        ),
        (
            'ordering = "fifo"\n  ordering_key = "customerId"',
            ("actions[0].ordering_key", "JSON-Logic expression", '{ var = "customerId" }'),
        ),
        (
            'ordering = "fifo"\n  ordering_key = { nosuchop = [1] }',
            ("actions[0].ordering_key", "nosuchop"),
        ),
    ],
)
def test_invalid_action_values(tmp_path: Path, line: str, words: tuple[str, ...]) -> None:
    result = load(tmp_path, f=rule("", actions=ACTION + f"  {line}\n"))
    assert_shape(only_error(result), str(tmp_path / "f.toml"), "r1", *words)


@pytest.mark.parametrize(("spelling", "seconds"), [('"2h"', 7200.0), ('"90s"', 90.0), ("15", 15.0)])
def test_delay_and_cancel_on_load(tmp_path: Path, spelling: str, seconds: float) -> None:
    extra = f"  delay = {spelling}\n"
    extra += '  cancel_on = { event_types = ["reopened"], match = "job.id" }\n'
    result = load(tmp_path, f=rule("", actions=ACTION + extra))
    assert result.errors == ()
    action = result.rules[0].actions[0]
    assert action.delay == seconds
    assert action.cancel_on is not None
    assert action.cancel_on.event_types == frozenset({"reopened"})
    assert action.cancel_on.key({"job": {"id": "j1"}}) == "j1"
    assert action.cancel_on.key({"job": {}}) is None
    assert action.content()["cancel_on"] == {"event_types": ["reopened"], "match": "job.id"}


def test_ordering_and_its_key_load(tmp_path: Path) -> None:
    extra = '  ordering = "fifo"\n  ordering_key = { var = "customer.id" }\n'
    plain = ACTION + '  ordering = "fifo"\n'
    result = load(tmp_path, f=rule("", actions=ACTION + extra + plain))
    assert result.errors == ()
    keyed, whole = result.rules[0].actions
    assert keyed.ordering == "fifo" and keyed.ordering_key is not None
    assert keyed.ordering_key.evaluate({"customer": {"id": "c1"}}) == "c1"
    assert (whole.ordering, whole.ordering_key) == ("fifo", None)
    assert keyed.content()["ordering"] == "fifo"
    assert keyed.content()["ordering_key"] == {"var": "customer.id"}
    assert "ordering_key" not in whole.content()
    assert "ordering" not in Action(type="webhook", url="https://example.com/").content()


def test_ordering_key_reads_the_files_vars(tmp_path: Path) -> None:
    key_line = '  ordering_key = { cat = [{ var = "vars.region" }, { var = "customerId" }] }\n'
    text = '[vars]\nregion = "eu-"\n\n' + rule(
        "", actions=ACTION + '  ordering = "fifo"\n' + key_line
    )
    result = load(tmp_path, f=text)
    assert result.errors == ()
    key = result.rules[0].actions[0].ordering_key
    assert key is not None and key.evaluate({"customerId": 7}) == "eu-7"


def test_a_rule_without_actions_is_an_error(tmp_path: Path) -> None:
    result = load(tmp_path, f=rule("", actions=""))
    assert_shape(
        only_error(result), str(tmp_path / "f.toml"), "r1", "actions: missing", "[[rules.actions]]"
    )


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    broken = """
[[rules]]
id = "one"
apps = "crm"
colour = "red"
when = { vr = "x" }
  [[rules.actions]]
  type = "sms"
  url = "ftp://x"
  retry = "often"

[[rules]]
description = "no id"
"""
    result = load(tmp_path, a=broken, b=rule("", "one") + rule("", "fine"))
    file_a, file_b = str(tmp_path / "a.toml"), str(tmp_path / "b.toml")
    messages = [str(e) for e in result.errors]
    assert len(messages) == 9, messages
    assert all(isinstance(e, RuleError) for e in result.errors)
    assert sum(m.startswith(f"{file_a}:one: ") for m in messages) == 6
    assert sum(m.startswith(f"{file_a}:-: ") for m in messages) == 2  # missing id, no actions
    assert messages[-1].startswith(f"{file_b}:one: id: duplicate")
    assert [r.id for r in result.rules] == ["fine"]
    assert not result.ok
