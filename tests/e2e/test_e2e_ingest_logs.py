"""Request logs (issue 2 item 9, docs/design.md §8): one JSON line per request with method, route
template, status, app id, event id and latency; never the token. Checked on the in-process
server (lines through `logging`) and on a child `hookgate serve` (batched lines on stderr).
The session-wide scan in conftest.py also fails the run if any token appears in any log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e

ROUTE = "/api/event/{token}"


def access_lines(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("logger") == "hookgate.access":
            out.append(record)
    return out


def check_ingest_line(line: dict[str, Any], status: int, app_id: Any, event_id: Any) -> None:
    assert line["msg"] == "request"
    assert line["method"] == "POST"
    assert line["route"] == ROUTE
    assert line["status"] == status
    assert line["app_id"] == app_id
    assert line["event_id"] == event_id
    assert isinstance(line["latency_ms"], int | float) and line["latency_ms"] >= 0
    assert line["ts"].endswith("Z")


def test_in_process_access_lines_carry_the_route_template_not_the_token(
    gateway: harness.Gateway,
) -> None:
    app_id, token = gateway.create_app("logged", rate=0.01, burst=1)
    start = len(harness.LOG_LINES)
    accepted = gateway.post_event(token, {"n": 1})
    event_id = accepted.json()["event_id"]
    limited = gateway.post_event(token, {"n": 2})
    assert limited.status_code == 429
    miss_token = token[:-2] + "zz"
    assert gateway.post_event(miss_token, {}).status_code == 404
    assert gateway.admin.get(f"/v1/apps/{app_id}").status_code == 200

    def seen() -> list[dict[str, Any]]:
        lines = access_lines(harness.LOG_LINES[start:])
        return lines if len(lines) >= 4 else []

    lines = harness.wait_until(seen, timeout=10)
    ingest = [line for line in lines if line["route"] == ROUTE]
    assert len(ingest) == 3, lines
    check_ingest_line(ingest[0], 202, app_id, event_id)
    check_ingest_line(ingest[1], 429, app_id, None)
    check_ingest_line(ingest[2], 404, None, None)
    admin = [line for line in lines if line["route"] != ROUTE]
    assert admin[-1]["route"] == "/v1/apps/{app_id}"
    assert (admin[-1]["method"], admin[-1]["status"]) == ("GET", 200)
    for text in harness.LOG_LINES[start:]:
        assert token not in text
        assert miss_token not in text
        assert "/api/event/" + token[:8] not in text


def test_child_process_writes_one_json_line_per_request_without_the_token(
    tmp_path: Path,
) -> None:
    env = {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
    }
    server = harness.ServerProcess(tmp_path, env, name="logs")
    base_url = server.start()
    try:
        with server.admin() as admin:
            created = admin.post("/v1/apps", json={"name": "logged"}).json()
        token = created["token"]
        harness.track_secret(token)
        with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as client:
            response = client.post(f"/api/event/{token}", content=b'{"type":"x"}')
            event_id = response.json()["event_id"]
            bad = client.post(f"/api/event/{token}", content=b"[]")
            assert bad.status_code == 400

        def logged() -> list[dict[str, Any]]:
            lines = access_lines(server.log_path.read_text().splitlines())
            ingest = [line for line in lines if line.get("route") == ROUTE]
            return ingest if len(ingest) >= 2 else []

        ingest = harness.wait_until(logged, timeout=10)
        assert len(ingest) == 2
        check_ingest_line(ingest[0], 202, created["id"], event_id)
        check_ingest_line(ingest[1], 400, created["id"], None)
        text = server.log_path.read_text()
        assert token not in text
        for line in text.splitlines():
            if line.startswith("{"):
                orjson.loads(line)  # every structured line is one JSON object
    finally:
        server.stop()
