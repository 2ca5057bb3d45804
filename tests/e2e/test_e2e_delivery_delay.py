"""Delayed actions (`delay`), cancelled by hand or by a later event (`cancel_on`): the real
server with its delivery worker process, a loopback sink, `kill -9` in between."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

DELAY = 3.0
SHELL_DELAY = 120.0  # the shell test starts two CLI processes before it cancels: never due


def _rules(tmp: Path, sink: harness.Sink, delay: float = DELAY) -> Path:
    return harness.rules_dir(
        tmp,
        review=f"""
[[rules]]
id = "review-request"
event_types = ["job_completed"]

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/review")}"
  retry = [1, 1]
  delay = "{delay:g}s"
  cancel_on = {{ event_types = ["job_reopened"], match = "job.id" }}
""",
    )


def _env(tmp: Path, rules_dir: Path) -> dict[str, str]:
    return harness.delivery_env(tmp, rules_dir, HOOKGATE_DELIVERY_WORKERS="1")


def _token(server: harness.ServerProcess) -> str:
    with server.admin() as admin:
        created = admin.post("/v1/apps", json={"name": "fieldapp"})
        assert created.status_code == 201, created.text
        token = str(created.json()["token"])
    harness.track_secret(token)
    return token


def _post(server: harness.ServerProcess, token: str, event_type: str, job: str) -> str:
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as public:
        response = public.post(
            f"/api/event/{token}", json={"event_type": event_type, "job": {"id": job}}
        )
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def _delivery_of(admin: httpx.Client, event_id: str) -> dict[str, object]:
    rows = admin.get("/v1/deliveries", params={"event_id": event_id}).json()["data"]
    assert len(rows) == 1, rows
    return dict(rows[0])


def test_a_delayed_delivery_arrives_after_its_delay_across_kill_9(
    tmp_path: Path, sink: harness.Sink
) -> None:
    server = harness.ServerProcess(tmp_path, _env(tmp_path, _rules(tmp_path, sink)), "delay")
    try:
        server.start()
        token = _token(server)
        posted_at = time.time()
        event_id = _post(server, token, "job_completed", "job_1")
        with server.admin() as admin:
            row = _delivery_of(admin, event_id)
        assert row["status"] == "scheduled", row
        assert row["next_attempt_at"] is not None
        server.kill9()
        assert sink.requests_to("/review") == []

        server.start()
        arrived = sink.wait_for(1, "/review", timeout=20.0)
        with server.admin() as admin:
            done = harness.wait_until(
                lambda: (r := _delivery_of(admin, event_id))["status"] == "succeeded" and r
            )
    finally:
        server.stop()
    assert len(arrived) == 1
    assert arrived[0].json()["data"]["job"]["id"] == "job_1"
    assert arrived[0].at >= posted_at + DELAY
    assert done["attempt_count"] == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_cancel_on_and_manual_cancel_stop_a_scheduled_delivery(
    tmp_path: Path, sink: harness.Sink, request: pytest.FixtureRequest, backend: str
) -> None:
    env = _env(tmp_path, _rules(tmp_path, sink))
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_url")
        env |= {
            "HOOKGATE_STORAGE_BACKEND": "redis",
            "HOOKGATE_REDIS_URL": redis_url["url"],
            "HOOKGATE_REDIS_KEY_PREFIX": redis_url["prefix"],
        }
    server = harness.ServerProcess(tmp_path, env, "cancel")
    try:
        server.start()
        token = _token(server)
        reopened = _post(server, token, "job_completed", "job_reopened_later")
        kept = _post(server, token, "job_completed", "job_kept")
        by_hand = _post(server, token, "job_completed", "job_by_hand")
        _post(server, token, "job_reopened", "job_reopened_later")
        _post(server, token, "job_reopened", "job_never_completed")
        with server.admin() as admin:
            assert _delivery_of(admin, reopened)["status"] == "cancelled"
            assert _delivery_of(admin, kept)["status"] == "scheduled"
            manual = _delivery_of(admin, by_hand)
            cancelled = admin.post(f"/v1/deliveries/{manual['id']}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            again = admin.post(f"/v1/deliveries/{manual['id']}/cancel")
            assert again.status_code == 409, again.text
            assert again.json()["error"] == "not_cancellable"
            missing = admin.post("/v1/deliveries/dlv_nope/cancel")
            assert missing.status_code == 404, missing.text

            sink.wait_for(1, "/review", timeout=20.0)
            harness.wait_until(lambda: _delivery_of(admin, kept)["status"] == "succeeded")
            # the kept one has been sent, so the two cancelled ones were due too: still off
            assert _delivery_of(admin, reopened)["status"] == "cancelled"
            assert _delivery_of(admin, by_hand)["status"] == "cancelled"
    finally:
        server.stop()
    sent = [r.json()["data"]["job"]["id"] for r in sink.requests_to("/review")]
    assert sent == ["job_kept"]


def test_hookgate_deliveries_cancel_from_the_shell(tmp_path: Path, sink: harness.Sink) -> None:
    env = _env(tmp_path, _rules(tmp_path, sink, delay=SHELL_DELAY))
    server = harness.ServerProcess(tmp_path, env, "cli-cancel")
    try:
        server.start()
        token = _token(server)
        event_id = _post(server, token, "job_completed", "job_cli")
        with server.admin() as admin:
            delivery = _delivery_of(admin, event_id)
        listed = _cli(tmp_path, env, "deliveries", "list")
        assert listed.returncode == 0, listed.stderr
        [row] = [line.split() for line in listed.stdout.splitlines()[1:]]
        assert row[:2] == [delivery["id"], "scheduled"]
        done = _cli(tmp_path, env, "deliveries", "cancel", str(delivery["id"]))
        assert done.returncode == 0, done.stderr
        assert f"delivery {delivery['id']} cancelled" in done.stdout
        again = _cli(tmp_path, env, "deliveries", "cancel", str(delivery["id"]))
        assert again.returncode == 1
        assert "is cancelled" in again.stderr
        with server.admin() as admin:
            assert _delivery_of(admin, event_id)["status"] == "cancelled"
    finally:
        server.stop()


def _cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=tmp,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
