"""The pipe protocol between the server and its delivery worker processes.

One JSON array per line (orjson). The worker asks, the server answers:
`[id, op, *args]` → `[id, ok, result]`; the server also notifies with `[0, name, *args]`
(`config` first, then `wake`, `reset`, `stop`). Bytes (bodies, payloads) travel as
latin-1 text, a lossless one-to-one mapping that orjson encodes without base64's cost.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from actions import Attempt, Delivery, EventInfo, TargetInfo


def _bytes_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot send {type(value).__name__} to a worker")


def dumps(message: list[Any]) -> bytes:
    return orjson.dumps(message, default=_bytes_default) + b"\n"


loads = orjson.loads


def attempt_from(data: dict[str, Any]) -> Attempt:
    return Attempt(**data)


def delivery_from(data: dict[str, Any]) -> Delivery:
    body = data["body"]
    return dataclasses.replace(
        Delivery(**{k: v for k, v in data.items() if k not in ("attempts",)}),
        body=None if body is None else body.encode("latin-1"),
        retry=tuple(data["retry"]),
        headers=tuple((name, value) for name, value in data["headers"]),
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
