"""`hookgate apps ...` and `hookgate events ...` against the store of a RUNNING gateway
process (issue 2 item 4): the server accepts a token the CLI created within one second, and
rotate (with and without grace), disable, enable and delete take effect on it."""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e


@dataclass
class Cli:
    """Runs `python -m gateway.cli` on one data dir; talks to the server over HTTP."""

    tmp: Path
    env: dict[str, str]
    server: harness.ServerProcess
    public: httpx.Client

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            cwd=self.tmp,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> Any:
        return orjson.loads(self.run(*args, "--json").stdout)

    def create(self, name: str, *extra: str) -> dict[str, Any]:
        record: dict[str, Any] = self.json("apps", "create", name, *extra)
        harness.track_secret(record["token"])
        return record

    def post_raw(self, token: str, body: bytes, headers: dict[str, str]) -> int:
        response = self.public.post(
            f"/api/event/{token}",
            content=body,
            headers={"content-type": "application/json", **headers},
        )
        return response.status_code

    def post(self, token: str, payload: Any = None) -> int:
        response = self.public.post(
            f"/api/event/{token}",
            content=orjson.dumps(payload if payload is not None else {}),
            headers={"content-type": "application/json"},
        )
        return response.status_code

    def until(self, token: str, status: int, timeout: float) -> None:
        """Poll until the server answers `status` for `token`, within `timeout` seconds."""
        harness.wait_until(lambda: self.post(token) == status, timeout=timeout, interval=0.05)


def cli_env(tmp: Path) -> dict[str, str]:
    return {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp / "data"),
        "HOOKGATE_RULES_DIR": str(tmp / "rules.d"),
        # polling with unknown tokens must not trip the token-guessing guard
        "HOOKGATE_LIMITS_UNKNOWN_TOKEN_PER_MINUTE": "100000",
        "HOOKGATE_LIMITS_GLOBAL_RATE": "10000",
        "HOOKGATE_LIMITS_GLOBAL_BURST": "10000",
        "HOOKGATE_LIMITS_APP_RATE": "10000",
        "HOOKGATE_LIMITS_APP_BURST": "10000",
    }


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("cli")
    env = cli_env(tmp)
    server = harness.ServerProcess(tmp, env, name="cli-server")
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as public:
            yield Cli(tmp, env, server, public)
    finally:
        server.stop()


def test_token_created_by_the_cli_is_accepted_within_one_second(cli: Cli) -> None:
    record = cli.create("fresh", "--rate", "20", "--burst", "30")
    created = time.monotonic()
    token = record["token"]
    assert record["name"] == "fresh"
    assert record["id"].startswith("app_")
    assert (record["rate"], record["burst"]) == (20, 30)
    assert record["event_url"].endswith("/api/event/" + token)
    cli.until(token, 202, timeout=max(0.0, 1.0 - (time.monotonic() - created)))
    with cli.server.admin() as admin:
        events = admin.get("/v1/events", params={"app_id": record["id"]}).json()["data"]
    assert len(events) == 1


def test_plain_create_prints_the_url_and_token_once(cli: Cli) -> None:
    done = cli.run("apps", "create", "plain")
    lines = done.stdout.splitlines()
    token = lines[-1].removeprefix("token: ")
    harness.track_secret(token)
    assert lines[0].startswith("created app plain (app_")
    assert lines[1].startswith("event URL (shown once): ")
    assert lines[1].endswith("/api/event/" + token)
    cli.until(token, 202, timeout=2)


def test_list_and_show_never_print_the_token(cli: Cli) -> None:
    record = cli.create("listed")
    token = record["token"]
    listed = cli.json("apps", "list")
    mine = [a for a in listed if a["id"] == record["id"]]
    assert len(mine) == 1
    assert mine[0]["name"] == "listed"
    assert mine[0]["event_url"] is None
    assert "token" not in mine[0]
    table = cli.run("apps", "list").stdout
    assert table.splitlines()[0].split() == ["ID", "NAME", "ENABLED", "RATE", "BURST"]
    assert any(line.split()[:3] == [record["id"], "listed", "yes"] for line in table.splitlines())
    by_id = cli.json("apps", "show", record["id"])
    by_name = cli.json("apps", "show", "listed")
    assert by_id == by_name
    assert by_id["id"] == record["id"]
    for text in (str(listed), table, str(by_id)):
        assert token not in text


def test_rotate_without_grace_stops_the_old_token_at_once(cli: Cli) -> None:
    record = cli.create("rotate-now")
    old = record["token"]
    cli.until(old, 202, timeout=2)
    rotated = cli.json("apps", "rotate", record["id"])
    new = rotated["token"]
    harness.track_secret(new)
    assert new != old
    assert rotated["event_url"].endswith("/api/event/" + new)
    assert "previous_token_expires_at" not in rotated
    cli.until(new, 202, timeout=2)
    # the index that knows the new token no longer knows the old one
    assert cli.post(old) == 404


def test_rotate_with_grace_keeps_the_old_token_until_the_grace_ends(cli: Cli) -> None:
    record = cli.create("rotate-grace")
    old = record["token"]
    cli.until(old, 202, timeout=2)
    rotated = cli.json("apps", "rotate", "rotate-grace", "--grace", "3")
    new = rotated["token"]
    harness.track_secret(new)
    # The expiry the server recorded, not one estimated here after the CLI returned.
    expires_at = datetime.fromisoformat(
        rotated["previous_token_expires_at"].replace("Z", "+00:00")
    ).timestamp()
    cli.until(new, 202, timeout=2)
    if time.time() < expires_at - 0.5:  # still well inside the grace period
        assert cli.post(old, {"via": "old"}) == 202
    cli.until(old, 404, timeout=10)
    assert time.time() >= expires_at - 0.01  # refused only once the grace had ended
    assert cli.post(new) == 202


def test_disable_enable_and_delete_reach_the_running_server(cli: Cli) -> None:
    record = cli.create("switch")
    token = record["token"]
    cli.until(token, 202, timeout=2)

    done = cli.run("apps", "disable", record["id"])
    assert done.stdout.strip() == "app switch disabled"
    assert cli.json("apps", "show", record["id"])["enabled"] is False
    cli.until(token, 404, timeout=2)

    done = cli.run("apps", "enable", "switch")
    assert done.stdout.strip() == "app switch enabled"
    cli.until(token, 202, timeout=2)

    done = cli.run("apps", "delete", record["id"])
    assert done.stdout.strip() == f"deleted app switch ({record['id']})"
    cli.until(token, 404, timeout=2)
    missing = cli.run("apps", "show", record["id"], ok=False)
    assert missing.returncode == 1
    assert "no app" in missing.stderr
    assert all(a["id"] != record["id"] for a in cli.json("apps", "list"))


def test_cli_errors_exit_non_zero_with_a_message(cli: Cli) -> None:
    cli.create("taken")
    duplicate = cli.run("apps", "create", "taken", ok=False)
    assert duplicate.returncode == 2
    assert "already exists" in duplicate.stderr
    bad_name = cli.run("apps", "create", "no spaces allowed", ok=False)
    assert bad_name.returncode == 2
    assert "name" in bad_name.stderr
    bad_grace = cli.run("apps", "rotate", "taken", "--grace", "-5", ok=False)
    assert bad_grace.returncode == 2
    assert "grace_seconds" in bad_grace.stderr
    for action in ("rotate", "delete"):
        unknown = cli.run("apps", action, "app_missing", ok=False)
        assert unknown.returncode == 1, action
        assert "no app 'app_missing'" in unknown.stderr
    missing_schema = cli.run("apps", "create", "s1", "--schema", "no-such-file.json", ok=False)
    assert missing_schema.returncode == 2
    assert "no-such-file.json" in missing_schema.stderr
    (cli.tmp / "broken.json").write_text("{not json")
    broken_schema = cli.run("apps", "create", "s2", "--schema", "broken.json", ok=False)
    assert broken_schema.returncode == 2
    assert "broken.json" in broken_schema.stderr
    failures = [duplicate, bad_name, bad_grace, missing_schema, broken_schema]
    assert all("Traceback" not in done.stderr for done in failures)
    assert all(a["name"] not in ("s1", "s2") for a in cli.json("apps", "list"))


def test_create_with_a_schema_file(cli: Cli) -> None:
    (cli.tmp / "schema.json").write_text('{"type": "object", "required": ["phone"]}')
    record = cli.create("schematic", "--schema", "schema.json")
    assert record["schema"] == {"type": "object", "required": ["phone"]}
    cli.until(record["token"], 422, timeout=2)
    assert cli.post(record["token"], {"phone": "1"}) == 202


def test_events_list_and_show(cli: Cli) -> None:
    record = cli.create("eventful")
    token = record["token"]
    cli.until(token, 202, timeout=2)  # the probe event
    for i in range(3):
        assert cli.post(token, {"event_type": "job", "n": i}) == 202
    listed = cli.json("events", "list", "--app-id", record["id"], "--limit", "2")
    assert len(listed["data"]) == 2
    assert [e["payload"].get("n") for e in listed["data"]] == [2, 1]
    rest = cli.json("events", "list", "--app-id", record["id"], "--cursor", listed["next_cursor"])
    assert [e["payload"].get("n") for e in rest["data"]] == [0, None]
    assert rest["next_cursor"] is None
    typed = cli.json("events", "list", "--app-id", record["id"], "--event-type", "job")
    assert len(typed["data"]) == 3
    shown = cli.json("events", "show", listed["data"][0]["id"])
    assert shown["payload"] == {"event_type": "job", "n": 2}
    assert shown["app_id"] == record["id"]
    assert shown["deliveries"] == []
    for limit in ("0", "-1", "501", "x"):
        bad = cli.run("events", "list", "--limit", limit, ok=False)
        assert bad.returncode == 2, limit
        assert "--limit" in bad.stderr and "Traceback" not in bad.stderr
    table = cli.run("events", "list", "--app-id", record["id"]).stdout
    assert table.splitlines()[0].split() == ["ID", "APP", "TYPE", "RECEIVED", "MATCHED"]
    assert len(table.splitlines()) == 5


def test_app_created_while_the_server_is_stopped_works_once_it_starts(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    server = harness.ServerProcess(tmp_path, env, name="later")
    with httpx.Client(trust_env=False, timeout=10) as public:
        cli = Cli(tmp_path, env, server, public)
        record = cli.create("offline")
        base_url = server.start()
        try:
            cli.public.base_url = httpx.URL(base_url)
            assert cli.post(record["token"]) == 202
        finally:
            server.stop()


def test_create_with_a_signature_scheme(cli: Cli) -> None:
    secret = "gh_" + secrets.token_hex(16)
    harness.track_secret(secret)
    record = cli.create("hubbed", "--signing-secret", secret, "--signature-scheme", "github")
    assert record["signature_scheme"] == "github"
    assert secret not in orjson.dumps(record).decode()
    body = b'{"event_type":"push"}'
    signature = "sha256=" + hmac.new(secret.encode(), body, "sha256").hexdigest()

    def signed(headers: dict[str, str]) -> int:
        return cli.post_raw(record["token"], body, headers)

    harness.wait_until(lambda: signed({"X-Hub-Signature-256": signature}) == 202, timeout=2)
    assert signed({"X-Webhook-Signature": signature}) == 401
    unknown = cli.run("apps", "create", "bad", "--signature-scheme", "md5", ok=False)
    assert unknown.returncode == 2
    assert "signature-scheme" in unknown.stderr


def test_update_switches_the_signature_scheme_of_an_existing_app(cli: Cli) -> None:
    secret = "sh_" + secrets.token_hex(16)
    harness.track_secret(secret)
    record = cli.create("switched", "--signing-secret", secret, "--signature-scheme", "github")
    body = b'{"event_type":"order"}'
    hub = "sha256=" + hmac.new(secret.encode(), body, "sha256").hexdigest()
    shopify = base64.b64encode(hmac.new(secret.encode(), body, "sha256").digest()).decode()

    def signed(headers: dict[str, str]) -> int:
        return cli.post_raw(record["token"], body, headers)

    harness.wait_until(lambda: signed({"X-Hub-Signature-256": hub}) == 202, timeout=2)
    updated = cli.json("apps", "update", "switched", "--signature-scheme", "shopify")
    assert updated["signature_scheme"] == "shopify"
    assert secret not in orjson.dumps(updated).decode()
    harness.wait_until(lambda: signed({"X-Shopify-Hmac-Sha256": shopify}) == 202, timeout=5)
    assert signed({"X-Hub-Signature-256": hub}) == 401
    nothing = cli.run("apps", "update", "switched", ok=False)
    assert nothing.returncode == 2
    assert "nothing to change" in nothing.stderr
