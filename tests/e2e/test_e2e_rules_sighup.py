"""SIGHUP reloads the rules of a `hookgate serve` process (polling off, so only the signal
can have done it); a broken file keeps the last good set and the process keeps serving."""

from __future__ import annotations

import signal
from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e


def rule(rule_id: str, url: str, event_types: str) -> str:
    return (
        f'[[rules]]\nid = "{rule_id}"\nevent_types = {event_types}\n'
        f'[[rules.actions]]\ntype = "webhook"\nurl = "{url}"\nretry = "none"\n'
    )


def post(admin: httpx.Client, token: str, payload: dict[str, str]) -> list[str]:
    response = admin.post(f"/api/event/{token}", json=payload)
    assert response.status_code == 202, response.text
    return admin.get(f"/v1/events/{response.json()['event_id']}").json()["matched_rules"]


def test_sighup_reloads_rules_and_keeps_the_last_good_set_on_errors(
    tmp_path: Path, sink: harness.Sink
) -> None:
    path = tmp_path / "rules.d" / "jobs.toml"  # the default ./rules.d of the child's cwd
    path.parent.mkdir()
    path.write_text(rule("r1", sink.url("/hook"), '["job_created"]'))
    server = harness.ServerProcess(
        tmp_path,
        {
            "HOOKGATE_RULES_DIR": "./rules.d",
            "HOOKGATE_RULES_RELOAD": "false",
            "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
        },
        name="sighup",
    )
    server.start()
    try:
        assert server.proc is not None
        with server.admin() as admin:
            created = admin.post("/v1/apps", json={"name": "acme"}).json()
            token = created["token"]
            harness.track_secret(token)
            assert post(admin, token, {"event_type": "job_completed"}) == []
            before = admin.get("/v1/rules").json()["version"]

            path.write_text(rule("r1", sink.url("/hook"), '["job_completed", "job_reopened"]'))
            server.proc.send_signal(signal.SIGHUP)
            harness.wait_until(lambda: admin.get("/v1/rules").json()["version"] != before)

            assert post(admin, token, {"event_type": "job_completed"}) == ["r1"]
            log = server.log_path.read_text()
            assert "SIGHUP received; reloading rules" in log

            good = admin.get("/v1/rules").json()
            path.write_text("[[rules]]\nid = 'r1'\nbogus = 1\n")
            server.proc.send_signal(signal.SIGHUP)
            broken = harness.wait_until(
                lambda: (r := admin.get("/v1/rules").json())["ok"] is False and r
            )
            assert [(e["file"], e["rule_id"]) for e in broken["errors"]] == [
                ("rules.d/jobs.toml", "r1"),  # unknown key "bogus"
                ("rules.d/jobs.toml", "r1"),  # no actions
            ]
            assert broken["version"] == good["version"] and broken["data"] == good["data"]
            assert post(admin, token, {"event_type": "job_completed"}) == ["r1"]
            assert server.proc.poll() is None  # still serving
    finally:
        server.stop()
    # SIGTERM: a graceful shutdown, then the one line `hookgate serve` ends with.
    assert server.log_path.read_text().splitlines()[-1] == "hookgate stopped"
    assert server.proc is not None and server.proc.returncode == 143
