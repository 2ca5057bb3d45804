"""CLI answers of issue 10 (items 10, 12-14, 16): the real `hookgate` in a child process
against the store of a running `hookgate serve` on a free port."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

from gateway.cli import build_parser
from gateway.version import __version__

pytestmark = pytest.mark.e2e

RULES = """
[[rules]]
id = "crm-only"
apps = ["crm", "chekkit"]
event_types = ["paid"]
  [[rules.actions]]
  type = "webhook"
  url = "{url}"
"""


def cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=tmp,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path, sink: harness.Sink) -> Any:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "r.toml").write_text(RULES.format(url=sink.url("/crm")))
    env = {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.1",
    }
    server = harness.ServerProcess(tmp_path, env, name="cli-answers")
    server.start()
    try:
        yield server, env
    finally:
        server.stop()


def test_cli_answers_against_a_running_gateway(
    tmp_path: Path, sink: harness.Sink, served: Any
) -> None:
    server, env = served
    # 14: the event URL is the one the server on its free port hands out.
    done = cli(tmp_path, env, "apps", "create", "crm", "--json")
    assert done.returncode == 0, done.stderr
    created = orjson.loads(done.stdout)
    harness.track_secret(created["token"])
    assert created["event_url"] == f"{server.base_url}/api/event/{created['token']}"
    with server.admin() as admin:
        served_app = admin.get(f"/v1/apps/{created['id']}").json()
        assert served_app["name"] == "crm"

    def post() -> httpx.Response:
        return httpx.post(created["event_url"], json={"type": "paid"}, trust_env=False)

    # The server picks up an app the CLI created within a second (apps poll).
    harness.wait_until(lambda: post().status_code == 202)
    sink.wait_for(1, "/crm")

    # 10: --app-id takes a name, and says when no app has that id.
    listed = cli(tmp_path, env, "events", "list", "--app-id", "crm", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(orjson.loads(listed.stdout)["data"]) == 1
    missing = cli(tmp_path, env, "events", "list", "--app-id", "chekkit")
    assert missing.returncode == 1
    assert "no app has the id or name 'chekkit'" in missing.stderr
    bad = cli(tmp_path, env, "events", "list", "--cursor", "zzz")
    assert bad.returncode == 2 and "not a cursor" in bad.stderr

    # 12: a succeeded delivery is sent again only with --force.
    def succeeded() -> list[dict[str, Any]]:
        out = cli(tmp_path, env, "deliveries", "list", "--status", "succeeded", "--json")
        return list(orjson.loads(out.stdout)["data"])

    delivery = harness.wait_until(succeeded)[0]
    refused = cli(tmp_path, env, "deliveries", "retry", delivery["id"])
    assert refused.returncode == 1 and "--force" in refused.stderr
    forced = cli(tmp_path, env, "deliveries", "retry", delivery["id"], "--force")
    assert forced.returncode == 0, forced.stderr
    sink.wait_for(2, "/crm")

    # 13 and 16: rules check warns about an app no app has; --json gives the findings.
    check = cli(tmp_path, env, "rules", "check", "--json")
    assert check.returncode == 0, check.stderr
    findings = orjson.loads(check.stdout)
    assert findings == [
        {
            "file": str(tmp_path / "rules.d" / "r.toml"),
            "rule_id": "crm-only",
            "message": "apps: no app is named 'chekkit'",
            "level": "warning",
        }
    ]
    text = cli(tmp_path, env, "rules", "check")
    assert text.returncode == 0
    assert "warning:" in text.stdout and "1 rules OK" in text.stdout

    # 13: rules test includes the webhook targets of the store and says why not.
    with server.admin() as admin:
        target = admin.post("/v1/webhook-targets", json={"url": sink.url("/t"), "events": ["paid"]})
        assert target.status_code == 201, target.text
        harness.track_secret(target.json()["secret"])
        event = {"type": "paid", "n": 1}
        api = admin.post("/v1/rules/test", json={"app": "shop", "event": event}).json()
    (tmp_path / "event.json").write_bytes(orjson.dumps(event))
    tested = cli(tmp_path, env, "rules", "test", "event.json", "--app", "shop", "--json")
    assert tested.returncode == 0, tested.stderr
    report = orjson.loads(tested.stdout)
    assert report["matched_rules"] == api["matched_rules"] == [f"target:{target.json()['id']}"]
    assert report["rules"] == api["rules"]
    assert "not listed in apps" in report["rules"][0]["reason"]
    plain = cli(tmp_path, env, "rules", "test", "event.json", "--app", "shop")
    assert "[crm-only] no match: app 'shop' is not listed in apps" in plain.stdout


def test_version_and_meaningless_json_flag(tmp_path: Path) -> None:
    version = cli(tmp_path, {}, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"hookgate {__version__}"
    for command in (["serve"], ["worker"], ["listen", "9"]):
        done = cli(tmp_path, {}, *command, "--json")
        assert done.returncode == 2 and "unrecognized arguments: --json" in done.stderr


def test_every_option_has_a_help_line() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += walk(child, f"{path} {name}")
            elif action.help is None or (not action.help.strip()):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(build_parser(), "hookgate") == []
