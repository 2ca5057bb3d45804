"""`AccessLog` lines: one JSON object per line, {ts, level, logger, msg, **fields}, built
from cached byte pieces rather than a merged dict."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway.observability.logs import AccessLog, JsonStreamHandler

NAME = "hookgate-test-access"  # outside "hookgate": nothing global is touched


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A JSON handler on a logger of its own, as `configure_logging` installs one."""
    out = io.StringIO()
    logger = logging.getLogger(NAME)
    handler = JsonStreamHandler(out)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield out
    logger.removeHandler(handler)


def lines_of(log: AccessLog, stream: io.StringIO) -> list[dict[str, object]]:
    log.flush()
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_the_head_then_the_fields_in_order(stream: io.StringIO) -> None:
    log = AccessLog(NAME)
    fields = {"method": "POST", "status": 202, "app_id": None, "latency_ms": 1.5}
    log.write("request", fields)
    log.write("request", {"path": Path("/x")})  # not JSON: written with str()
    log.write("empty", {})
    first, second, third = lines_of(log, stream)
    assert list(first) == ["ts", "level", "logger", "msg", *fields]
    assert {k: first[k] for k in fields} == fields
    assert (first["level"], first["logger"], first["msg"]) == (
        "info",
        NAME,
        "request",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(first["ts"]))
    assert second["path"] == "/x"
    assert third == {k: third[k] for k in ("ts", "level", "logger", "msg")}
    assert third["msg"] == "empty"


def test_messages_are_escaped_as_json(stream: io.StringIO) -> None:
    log = AccessLog(NAME)
    for n in range(100):  # more distinct messages than the head cache keeps
        log.write(f'say "hi" {n}\n', {"n": n})
    found = lines_of(log, stream)
    assert [(line["msg"], line["n"]) for line in found] == [
        (f'say "hi" {n}\n', n) for n in range(100)
    ]
