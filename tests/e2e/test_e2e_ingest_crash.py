"""Crash safety (issue 2 acceptance): events stream into a child-process gateway on SQLite,
the process is `kill -9`ed mid-stream from another thread, restarted on the same data dir,
and every event that was answered 2xx is found through `GET /v1/events`.

A 202 is sent only after the group commit holding the event; with `synchronous = normal`
(WAL) or `full`, a committed transaction survives the death of the process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e

SENDERS = 8
KILL_AFTER = 150  # acknowledged events before the kill


def all_events(admin: httpx.Client, app_id: str) -> dict[str, Any]:
    """Every stored event of `app_id`, paging with the cursor; by id."""
    found: dict[str, Any] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"app_id": app_id, "limit": 97}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/v1/events", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        for event in body["data"]:
            assert event["id"] not in found, "an event was listed twice across pages"
            found[event["id"]] = event
        cursor = body["next_cursor"]
        if cursor is None:
            return found


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_every_acknowledged_event_survives_kill_9(tmp_path: Path, synchronous: str) -> None:
    env = {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": synchronous,
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_LIMITS_GLOBAL_RATE": "1000000",
        "HOOKGATE_LIMITS_GLOBAL_BURST": "1000000",
    }
    server = harness.ServerProcess(tmp_path, env, name=f"crash-{synchronous}")
    base_url = server.start()
    try:
        with server.admin() as admin:
            created = admin.post("/v1/apps", json={"name": "s", "rate": 1e6, "burst": 1000000})
            assert created.status_code == 201
        app_id, token = created.json()["id"], created.json()["token"]
        harness.track_secret(token)

        acked: dict[str, tuple[int, int]] = {}  # event id -> (sender, seq)
        lock = threading.Lock()
        enough = threading.Event()
        failures: list[str] = []
        cut_off: list[int] = []

        def send(sender: int) -> None:
            with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as client:
                seq = 0
                while True:
                    seq += 1
                    body = orjson.dumps({"event_type": "tick", "sender": sender, "seq": seq})
                    try:
                        response = client.post(
                            f"/api/event/{token}",
                            content=body,
                            headers={"content-type": "application/json"},
                        )
                    except httpx.TransportError:
                        with lock:
                            cut_off.append(sender)
                        return  # the server is gone
                    if not response.is_success:
                        failures.append(f"{response.status_code} {response.text}")
                        return
                    with lock:
                        acked[response.json()["event_id"]] = (sender, seq)
                        if len(acked) >= KILL_AFTER:
                            enough.set()

        def killer() -> None:
            if enough.wait(timeout=30):
                server.kill9()

        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(SENDERS)]
        kill_thread = threading.Thread(target=killer, daemon=True)
        kill_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=40)
        kill_thread.join(timeout=40)
        assert not failures, failures[:3]
        assert server.proc is not None and server.proc.returncode == -9, "not killed mid-stream"
        assert len(acked) >= KILL_AFTER
        assert sorted(cut_off) == list(range(SENDERS)), "every sender was cut off mid-stream"

        server.start()  # the same data dir
        with server.admin() as admin:
            stored = all_events(admin, app_id)
        missing = sorted(set(acked) - set(stored))
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        for event_id, (sender, seq) in acked.items():
            payload = stored[event_id]["payload"]
            assert payload == {"event_type": "tick", "sender": sender, "seq": seq}
        # and the restarted gateway takes new events
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as client:
            after = client.post(f"/api/event/{token}", content=b'{"after":true}')
            assert after.status_code == 202
    finally:
        server.stop()
