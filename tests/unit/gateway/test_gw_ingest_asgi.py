"""The ingest endpoint under a server that is not hookgate's own: with no
`scope["hookgate.respond"]` it answers with the two standard ASGI messages, and the event is
stored as under uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import HookgateApp, create_app
from gateway.config import load_settings
from gateway.http.protocol import RESPOND
from gateway.records.apps import create_app as create_app_record


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[HookgateApp, str]]:
    (tmp_path / "rules.d").mkdir()
    settings = load_settings(
        env={
            "HOOKGATE_ADMIN_TOKEN": "admin-token-for-asgi-test",
            "HOOKGATE_STORAGE_BACKEND": "memory",
            "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
            "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
            "HOOKGATE_DELIVERY_WORKERS": "0",
        }
    )
    app = create_app(settings)
    await app.gateway.start()
    try:
        _, token = await create_app_record(app.gateway.store, "crm")
        await app.gateway.apps.refresh(force=True)
        yield app, token
    finally:
        await app.gateway.stop()


async def _post(app: HookgateApp, token: str, body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/event/{token}",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
    }
    assert RESPOND not in scope

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_an_event_is_answered_with_the_two_asgi_messages(
    served: tuple[HookgateApp, str],
) -> None:
    app, token = served
    start, body = await _post(app, token, b'{"event_type":"order.created","id":1}')
    assert start["type"] == "http.response.start"
    assert start["status"] == 202
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert b"ratelimit-remaining" in headers
    assert body["type"] == "http.response.body"
    answer = orjson.loads(body["body"])
    assert answer["accepted"] is True
    stored = await app.gateway.store.get_event(answer["event_id"])
    assert stored is not None
    assert stored.event_type == "order.created"


async def test_a_bad_body_is_refused_the_same_way(served: tuple[HookgateApp, str]) -> None:
    app, token = served
    start, body = await _post(app, token, b"{not json")
    assert start["status"] == 400
    assert int(dict(start["headers"])[b"content-length"]) == len(body["body"])
    assert orjson.loads(body["body"])["error"] == "invalid_json"
