"""`hookgate rules check` and `hookgate rules test`, run as the operator runs them: a child
process in a directory of its own, with a clean environment (no HOOKGATE_* from ours)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import harness
import orjson
import pytest
from standardwebhooks import Webhook

from gateway.version import __version__

pytestmark = pytest.mark.e2e

LINE = re.compile(r"(?P<file>[^:]+):(?P<rule_id>[^:\s]+): (?P<message>.+)")
HOOK = "http://127.0.0.1:9/hook"  # never contacted: these commands send nothing


def hookgate(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rule(rule_id: str, *, url: str = HOOK, extra: str = "", action: str = "") -> str:
    return (
        f'[[rules]]\nid = "{rule_id}"\n{extra}\n'
        f'  [[rules.actions]]\n  type = "webhook"\n  url = "{url}"\n{action}\n'
    )


# -- rules check ----------------------------------------------------------------------------


def test_check_counts_the_rules_of_a_valid_directory(tmp_path: Path) -> None:
    write(tmp_path / "here" / "a.toml", rule("a1") + rule("a2", extra='event_types = ["x"]'))
    write(tmp_path / "here" / "b.toml", rule("b1", extra='when = { "!!" = { var = "phone" } }'))
    write(tmp_path / "here" / "notes.txt", "not a rule file")

    result = hookgate(tmp_path, "rules", "check", "here")

    assert (result.returncode, result.stdout, result.stderr) == (0, "3 rules OK\n", "")


def test_check_defaults_to_the_configured_rules_dir(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", rule("a1"))
    write(tmp_path / "elsewhere" / "b.toml", rule("b1") + rule("b2"))
    write(tmp_path / "third" / "c.toml", rule("c1") + rule("c2") + rule("c3"))
    write(tmp_path / "hookgate.toml", '[rules]\ndir = "third"\n')

    assert hookgate(tmp_path, "rules", "check").stdout == "3 rules OK\n"  # ./hookgate.toml
    (tmp_path / "hookgate.toml").unlink()
    assert hookgate(tmp_path, "rules", "check").stdout == "1 rules OK\n"  # ./rules.d
    moved = hookgate(tmp_path, "rules", "check", env={"HOOKGATE_RULES_DIR": "elsewhere"})
    assert moved.stdout == "2 rules OK\n"


def test_check_prints_every_error_as_file_rule_message_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", rule("thanks"))
    write(
        tmp_path / "rules.d" / "b.toml",
        rule("bad-key", extra='evnt_types = ["x"]')
        + rule("bad-op", extra='when = { "nope" = [1] }')
        + rule("bad-url", url="not a url")
        + rule("bad-secret", action='  secret_env = "HG_TEST_NOT_SET"')
        + rule("thanks"),
    )
    write(tmp_path / "rules.d" / "c.toml", "[[rules]\n")

    result = hookgate(tmp_path, "rules", "check", "rules.d")

    assert result.returncode == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [(m["file"], m["rule_id"]) for m in parsed if m] == [
        ("rules.d/b.toml", "bad-key"),
        ("rules.d/b.toml", "bad-op"),
        ("rules.d/b.toml", "bad-url"),
        ("rules.d/b.toml", "bad-secret"),
        ("rules.d/b.toml", "thanks"),
        ("rules.d/c.toml", "-"),
    ]
    assert lines[0] == (
        'rules.d/b.toml:bad-key: unknown key "evnt_types" (did you mean "event_types"?); '
        "a rule takes: actions, apps, description, enabled, event_types, id, when"
    )
    assert lines[1].startswith("rules.d/b.toml:bad-op: when: unknown operator `nope`")
    assert lines[2].startswith("rules.d/b.toml:bad-url: actions[0].url: must be an absolute")
    assert lines[3] == (
        "rules.d/b.toml:bad-secret: actions[0].secret_env: "
        "environment variable HG_TEST_NOT_SET is not set"
    )
    assert lines[4] == (
        'rules.d/b.toml:thanks: id: duplicate rule id "thanks"; first defined in rules.d/a.toml'
    )
    assert lines[5].startswith("rules.d/c.toml:-: invalid TOML: ")
    assert "rules OK" not in result.stdout


def test_check_rejects_a_bad_ordering_and_a_malformed_ordering_key(tmp_path: Path) -> None:
    write(
        tmp_path / "rules.d" / "a.toml",
        rule("lifo", action='  ordering = "lifo"')
        + rule("bad-key", action='  ordering = "fifo"\n  ordering_key = { nope = [1] }')
        + rule("bare-key", action='  ordering = "fifo"\n  ordering_key = "customerId"')
        + rule("fifo", action='  ordering = "fifo"\n  ordering_key = { var = "customerId" }'),
    )
    result = hookgate(tmp_path, "rules", "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert lines[0].startswith('rules.d/a.toml:lifo: actions[0].ordering: must be "fifo"')
    assert lines[0].endswith("got 'lifo'")
    assert lines[1].startswith("rules.d/a.toml:bad-key: actions[0].ordering_key: ")
    assert "nope" in lines[1]
    assert lines[2] == (
        "rules.d/a.toml:bare-key: actions[0].ordering_key: must be a JSON-Logic expression "
        "evaluated on the event, such as { var = \"customerId\" }, got 'customerId'"
    )


def test_check_reads_secret_env_from_the_environment(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", rule("signed", action='  secret_env = "HG_CLI_SECRET"'))
    missing = hookgate(tmp_path, "rules", "check")
    assert missing.returncode == 1
    assert missing.stdout == (
        "rules.d/a.toml:signed: actions[0].secret_env: environment variable HG_CLI_SECRET "
        "is not set\n"
    )
    present = hookgate(tmp_path, "rules", "check", env={"HG_CLI_SECRET": "whsec_c2VjcmV0"})
    assert (present.returncode, present.stdout) == (0, "1 rules OK\n")


def test_check_refuses_a_secret_env_value_that_cannot_sign(tmp_path: Path) -> None:
    # Issue 10: this secret used to pass `rules check` ("1 rules OK") and then make every
    # delivery of the rule raise, forever; the value itself is never printed.
    write(tmp_path / "rules.d" / "a.toml", rule("signed", action='  secret_env = "HG_CLI_SECRET"'))
    for bad in ("whsec_notbase64!!", "whsec_", "whsec_A", "not a secret"):
        result = hookgate(tmp_path, "rules", "check", env={"HG_CLI_SECRET": bad})
        assert result.returncode == 1, bad
        assert result.stdout == (
            "rules.d/a.toml:signed: actions[0].secret_env: not a valid signing secret "
            "(expected whsec_<base64>)\n"
        ), bad
        assert "rules OK" not in result.stdout
    # Unpadded base64 and a bare key without the prefix sign as the reference libraries do.
    for good in ("whsec_c2VjcmV0", "c2VjcmV0", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"):
        result = hookgate(tmp_path, "rules", "check", env={"HG_CLI_SECRET": good})
        assert (result.returncode, result.stdout) == (0, "1 rules OK\n"), good


def test_check_of_a_missing_directory_exits_1(tmp_path: Path) -> None:
    result = hookgate(tmp_path, "rules", "check", "nope")
    assert result.returncode == 1
    assert result.stdout == "nope:-: rules directory does not exist or is not a directory\n"


def test_check_passes_on_the_shipped_examples(tmp_path: Path) -> None:
    examples = harness.REPO / "examples" / "rules.d"
    result = hookgate(tmp_path, "rules", "check", str(examples))
    assert result.returncode == 0, result.stdout + result.stderr
    count = re.fullmatch(r"(\d+) rules OK\n", result.stdout)
    assert count and int(count[1]) >= 1, result.stdout


BODY = '{ to = { var = "phone" }, text = { cat = ["Thanks ", { var = "name" }, "!"] } }'

# -- rules test -----------------------------------------------------------------------------

THANKS = rule(
    "thanks",
    extra='apps = ["acme"]\nevent_types = ["job_completed"]\nwhen = { "!!" = { var = "phone" } }',
    action="  body = " + BODY,
) + rule("every-app", url="http://127.0.0.1:9/all", action='  retry = "none"')
EVENT = {"event_type": "job_completed", "phone": "555", "name": "Ann"}


def test_rules_test_prints_matching_rules_and_rendered_bodies(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", THANKS)
    write(tmp_path / "event.json", orjson.dumps(EVENT).decode())

    result = hookgate(tmp_path, "rules", "test", "event.json", "--app", "acme")

    assert result.returncode == 0, result.stderr
    head = (
        "event type: job_completed\n"
        "matching rules: thanks, every-app\n"
        "\n"
        f"[thanks] webhook -> POST {HOOK}\n"
        "  Content-Type: application/json\n"
        f"  User-Agent: hookgate/{__version__}\n"
        "{\n"
        '  "to": "555",\n'
        '  "text": "Thanks Ann!"\n'
        "}\n"
        "\n"
        "[every-app] webhook -> POST http://127.0.0.1:9/all\n"
        "  Content-Type: application/json\n"
        f"  User-Agent: hookgate/{__version__}\n"
    )
    assert result.stdout.startswith(head), result.stdout
    envelope = orjson.loads(result.stdout[len(head) :])  # the envelope of docs/design.md §6
    assert envelope["data"] == EVENT
    assert (envelope["type"], envelope["app"]) == ("job_completed", "acme")
    assert envelope["id"].startswith("evt_")
    assert not (tmp_path / "data").exists()  # nothing stored: no data dir was even made


def test_rules_test_json_report(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", THANKS)
    write(tmp_path / "event.json", orjson.dumps(EVENT).decode())

    result = hookgate(tmp_path, "rules", "test", "event.json", "--app", "acme", "--json")

    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["event_type"] == "job_completed"
    assert report["matched_rules"] == ["thanks", "every-app"]
    thanks, every = report["requests"]
    assert thanks["body"] == {"to": "555", "text": "Thanks Ann!"}
    assert (thanks["rule_id"], thanks["action_type"], thanks["url"]) == ("thanks", "webhook", HOOK)
    assert every["body"]["data"] == EVENT and every["body"]["app"] == "acme"
    assert every["retry"] == []


def test_rules_test_app_and_dir_options(tmp_path: Path) -> None:
    write(tmp_path / "other" / "a.toml", THANKS)
    write(tmp_path / "event.json", orjson.dumps(EVENT).decode())

    def matched(*args: str) -> list[str]:
        result = hookgate(tmp_path, "rules", "test", "event.json", "--json", *args)
        assert result.returncode == 0, result.stderr
        return orjson.loads(result.stdout)["matched_rules"]

    assert matched("--dir", "other", "--app", "acme") == ["thanks", "every-app"]
    assert matched("--dir", "other", "--app", "someone-else") == ["every-app"]
    assert matched("--dir", "other") == ["every-app"]
    write(tmp_path / "event.json", orjson.dumps({"event_type": "job_completed"}).decode())
    assert matched("--dir", "other", "--app", "acme") == ["every-app"]  # `when` needs phone


def test_rules_test_without_a_match(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", rule("typed", extra='event_types = ["other"]'))
    write(tmp_path / "event.json", '{"type": "ping"}')
    result = hookgate(tmp_path, "rules", "test", "event.json")
    assert (result.returncode, result.stdout) == (
        0,
        "event type: ping\n"
        "[typed] no match: event type 'ping' is not listed in event_types (other)\n"
        "no rules match\n",
    )


def test_rules_test_signs_with_secret_env_without_printing_the_secret(
    tmp_path: Path, sink: harness.Sink
) -> None:
    secret = "whsec_" + "Y2xpLXJ1bGVzLXRlc3Qtc2VjcmV0LTAxMjM0NTY3"
    harness.track_secret(secret)
    write(
        tmp_path / "rules.d" / "a.toml",
        rule("signed", url=sink.url("/cli"), action='  secret_env = "HG_CLI_SECRET"'),
    )
    write(tmp_path / "event.json", orjson.dumps(EVENT).decode())

    result = hookgate(
        tmp_path, "rules", "test", "event.json", "--json", env={"HG_CLI_SECRET": secret}
    )

    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    (request,) = orjson.loads(result.stdout)["requests"]
    signed = {
        k: request["headers"][k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    Webhook(secret).verify(orjson.dumps(request["body"]), signed)
    assert sink.received == []  # the process has exited: whatever it sent would be here


def test_rules_test_refuses_broken_rules(tmp_path: Path) -> None:
    write(tmp_path / "rules.d" / "a.toml", rule("bad", url="ftp://example.com/x"))
    write(tmp_path / "event.json", "{}")
    result = hookgate(tmp_path, "rules", "test", "event.json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("rules.d/a.toml:bad: actions[0].url: ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "hookgate: cannot read event.json: "),
        ("{not json", "hookgate: cannot read event.json: "),
        ("[1, 2]", "hookgate: event.json: the event must be a JSON object"),
    ],
)
def test_rules_test_refuses_an_unreadable_event(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    write(tmp_path / "rules.d" / "a.toml", rule("r1"))
    if content is not None:
        write(tmp_path / "event.json", content)
    result = hookgate(tmp_path, "rules", "test", "event.json")
    assert result.returncode == 1
    assert result.stderr.startswith(expected), result.stderr


def test_check_reports_bad_format_time_and_unknown_vars_as_file_rule_message(
    tmp_path: Path,
) -> None:
    body = '  body = { at = { format_time = [{ var = "t" }, "%Y %Q", "Mars/Base"] } }'
    write(
        tmp_path / "rules.d" / "a.toml",
        "[vars]\nteam = true\n\n"
        + rule("fmt", action=body)
        + rule("sw", extra='when = { var = "vars.teem" }'),
    )
    result = hookgate(tmp_path, "rules", "check")
    assert result.returncode == 1
    lines = [LINE.fullmatch(line) for line in result.stdout.splitlines()]
    assert all(lines), result.stdout
    found = {(m["rule_id"], m["message"]) for m in lines if m}
    assert all(m["file"] == "rules.d/a.toml" for m in lines if m)
    messages = "\n".join(message for _, message in found)
    assert ("sw", 'when: unknown var "vars.teem"; this file defines: team (at /var)') in found
    assert "format_time: '%Q' is not a strftime directive" in messages
    assert "format_time: unknown time zone 'Mars/Base'" in messages
    assert {rule_id for rule_id, _ in found} == {"fmt", "sw"}
