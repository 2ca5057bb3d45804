"""A fast loopback receiver for delivery benchmarks: raw ASGI, answers 200 to anything and
counts what it received (GET /count returns the number)."""

from __future__ import annotations

from typing import Any

_count = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _count
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        body = str(_count).encode()
    else:
        _count += 1
        body = b"{}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
