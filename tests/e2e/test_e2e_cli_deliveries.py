"""`hookgate deliveries list|show|retry|recover` against the store of a running gateway
process: the delivery log from the shell, and manual recovery that re-sends with the same
`webhook-id`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e

SECRET = "whsec_Y2xpLWRlbGl2ZXJpZXMtdGVzdC1zZWNyZXQ="
RULES = """
[[rules]]
id = "to-sink"
event_types = ["job_completed"]

  [[rules.actions]]
  type = "webhook"
  url = "{url}"
  retry = "none"
  secret_env = "CLI_DELIVERY_SECRET"
"""


def run_cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=tmp,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_deliveries_cli_lists_shows_retries_and_recovers(
    tmp_path: Path, sink: harness.Sink
) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "sink.toml").write_text(RULES.format(url=sink.url("/cli")))
    env = {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.1",
        "CLI_DELIVERY_SECRET": SECRET,
    }
    harness.track_secret(SECRET)
    sink.statuses["/cli"] = 500
    server = harness.ServerProcess(tmp_path, env, name="cli-deliveries")
    server.start()
    try:
        created = orjson.loads(run_cli(tmp_path, env, "apps", "create", "shop", "--json").stdout)
        harness.track_secret(created["token"])
        since = time.time() - 1
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as public:

            def post(n: int) -> httpx.Response:
                return public.post(
                    f"/api/event/{created['token']}",
                    content=orjson.dumps({"event_type": "job_completed", "n": n}),
                    headers={"content-type": "application/json"},
                )

            # The server picks up an app the CLI created within a second (apps poll).
            first = harness.wait_until(lambda: (r := post(0)).status_code != 404 and r, 3.0)
            assert first.status_code == 202
            for n in (1, 2):
                assert post(n).status_code == 202
        sink.wait_for(3, "/cli")

        def failed() -> list[dict[str, Any]]:
            listed = orjson.loads(
                run_cli(tmp_path, env, "deliveries", "list", "--status", "failed", "--json").stdout
            )
            return list(listed["data"])

        rows = harness.wait_until(lambda: len(failed()) == 3 and failed(), timeout=10)
        assert {r["rule_id"] for r in rows} == {"to-sink"}
        table = run_cli(tmp_path, env, "deliveries", "list").stdout
        assert all(r["id"] in table for r in rows)

        shown = orjson.loads(run_cli(tmp_path, env, "deliveries", "show", rows[0]["id"]).stdout)
        assert shown["status"] == "failed"
        assert [a["status_code"] for a in shown["attempts"]] == [500]
        assert shown["attempts"][0]["error"] == "HTTP 500"
        # What was sent and what came back, signature values redacted, in the CLI and the API.
        request = shown["attempts"][0]["request"]
        assert request["method"] == "POST"
        assert request["url"] == sink.url("/cli")
        sent = {k.lower(): v for k, v in request["headers"]}
        assert sent["webhook-id"] == rows[0]["id"]
        assert sent["webhook-signature"] == "…"
        assert sent["x-webhook-signature"] == "…"
        assert orjson.loads(request["body"])["data"]["n"] in (0, 1, 2)
        response = shown["attempts"][0]["response"]
        assert response["status"] == 500
        assert any(k.lower() == "content-length" for k, _ in response["headers"])
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as admin:
            api = admin.get(
                f"/v1/deliveries/{rows[0]['id']}",
                headers={"Authorization": f"Bearer {harness.ADMIN_TOKEN}"},
            ).json()
        assert api["attempts"][0]["request"] == request
        assert api["attempts"][0]["response"] == response

        # The receiver is fixed: one retry, then everything else since `since`.
        sink.statuses["/cli"] = 200
        out = run_cli(tmp_path, env, "deliveries", "retry", rows[0]["id"]).stdout
        assert rows[0]["id"] in out
        retried = sink.wait_for(4, "/cli", timeout=10)[3]
        assert retried.headers["webhook-id"] == rows[0]["id"]  # same id: receivers dedupe

        out = run_cli(tmp_path, env, "deliveries", "recover", "--since", str(since)).stdout
        assert "requeued 2" in out
        sink.wait_for(6, "/cli", timeout=10)
        harness.wait_until(lambda: not failed(), timeout=10)
    finally:
        server.stop()
