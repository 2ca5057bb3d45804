"""The pipe protocol between the server and its child processes (delivery workers, and
the SQLite writer, which speaks the same line format).

One JSON array per line (orjson). The worker asks, the server answers:
`[id, op, *args]` → `[id, ok, result]`; the server also notifies with `[0, name, *args]`
(`config` first, then `wake`, `reset`, `stop`). A worker reports attempts finished
together as one `finishes` request (`[[delivery_id, attempt, status, next_at, token], ...]`,
answered `[[ok, recorded or error], ...]`). Bytes (bodies, payloads) travel as
latin-1 text, a lossless one-to-one mapping that orjson encodes without base64's cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import orjson

from actions import Attempt, Delivery, EventInfo, RateLimit, TargetInfo


def _bytes_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot send {type(value).__name__} through a pipe")


def dumps(message: list[Any]) -> bytes:
    return orjson.dumps(message, default=_bytes_default) + b"\n"


loads = orjson.loads


class LineBuffer:
    """Messages written within one event-loop iteration go out in one write (one system
    call per iteration, not per message: a worker finishes many deliveries at once)."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._lines: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, message: list[Any]) -> None:
        if not self._lines:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)
        self._lines.append(dumps(message))

    def flush(self) -> None:
        if self._lines:
            data = b"".join(self._lines)
            self._lines.clear()
            self._write(data)


def attempt_from(data: dict[str, Any]) -> Attempt:
    return Attempt.from_data(data)


def delivery_from(data: dict[str, Any]) -> Delivery:
    body = data["body"]
    return dataclasses.replace(
        Delivery(**{k: v for k, v in data.items() if k not in ("attempts",)}),
        body=None if body is None else body.encode("latin-1"),
        retry=tuple(data["retry"]),
        headers=tuple((name, value) for name, value in data["headers"]),
        rate_limit=RateLimit.from_list(data.get("rate_limit")),
        attempts=tuple(attempt_from(a) for a in data["attempts"]),
    )


def event_from(data: dict[str, Any] | None) -> EventInfo | None:
    if data is None:
        return None
    return EventInfo(
        data["id"],
        data["type"],
        data["app"],
        data["received_at"],
        data["payload"].encode("latin-1"),
    )


def target_from(data: dict[str, Any] | None) -> TargetInfo | None:
    return None if data is None else TargetInfo(**data)
