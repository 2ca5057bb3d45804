"""Structured logging: one JSON object per line on stderr.

Ordinary log records go through `logging` with `JsonFormatter`. Request and delivery-attempt
lines are the high-volume ones (one per request), so `AccessLog` writes them without a
LogRecord each: it serialises the fields with orjson and hands the lines to the JSON
handler's stream in batches, flushed at least every 100 ms. When logging has not been set
up by `configure_logging` (tests, embedding), it falls back to plain `logging` calls so
whatever handler is installed still sees every line.

Nothing here ever sees a token or a secret: the ingest route logs its route template, not
its path, and a path no route matched is logged through `redact_path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import IO, Any

import orjson

ACCESS = "hookgate.access"
FLUSH_SECONDS = 0.1
FLUSH_BYTES = 64 * 1024


REDACT_FROM = 16  # path segments this long or longer may be tokens (they are 32 chars)


def redact_path(path: str) -> str:
    """`path` with every segment of 16 or more characters replaced by `…`, so that a
    near-miss event URL (`/api/events/<token>`, `//api/event/<token>`) logs no token."""
    return "/".join("…" if len(part) >= REDACT_FROM else part for part in path.split("/"))


def _timestamp(epoch: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs; `AccessLog` writes past it to its stream."""


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Route the `hookgate` loggers (and uvicorn's error log) to JSON lines on stderr."""
    # Every LogRecord would otherwise call getpid() and look up thread and process names.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = JsonStreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("hookgate", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # uvicorn's info lines narrate its lifecycle ("Uvicorn running on …", four lines per
    # shutdown); `hookgate serve` prints its own banner and one line when it stops.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.setLevel(max(uvicorn_log.level, logging.WARNING))
    # uvicorn's access log prints the request path, and an event URL's path is a secret.
    logging.getLogger("uvicorn.access").disabled = True


class AccessLog:
    """High-volume JSON lines (requests, delivery attempts), batched onto the log stream."""

    def __init__(self, name: str = ACCESS) -> None:
        self._logger = logging.getLogger(name)
        self._name = name
        self._lines: list[bytes] = []
        self._size = 0
        self._second = -1
        self._prefix = b""
        self._head = b'","level":"info","logger":' + orjson.dumps(name) + b',"msg":'
        self._heads: dict[str, bytes] = {}
        # The JSON handler's stream, looked up again at every flush (not per line).
        self._target: IO[str] | None = self._stream()
        self._task: asyncio.Task[None] | None = None

    def _stream(self) -> IO[str] | None:
        logger = self._logger
        while logger is not None:
            for handler in logger.handlers:
                if isinstance(handler, JsonStreamHandler):
                    return handler.stream  # type: ignore[no-any-return]
            if not logger.propagate:
                return None
            logger = logger.parent  # type: ignore[assignment]
        return None

    @property
    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, msg: str, fields: dict[str, Any]) -> None:
        """Log one line at info level with `fields`."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        if self._target is None:
            self._logger.info(msg, extra={"fields": fields})
            return
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._prefix = (
                b'{"ts":"' + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            )
        # The same object as {ts, level, logger, msg, **fields}, spliced from bytes rather
        # than built as a merged dict (fields never use those four names).
        head = self._heads.get(msg)
        if head is None:
            head = self._head + orjson.dumps(msg)
            if len(self._heads) < 64:  # callers pass a handful of constant messages
                self._heads[msg] = head
        body = orjson.dumps(fields, default=str)
        line = b"%s.%03dZ%s%s%s\n" % (
            self._prefix,
            int(now * 1000) % 1000,
            head,
            b"," if len(body) > 2 else b"",
            body[1:],
        )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        stream = self._target
        self._target = self._stream()
        if not self._lines:
            return
        data = b"".join(self._lines).decode()
        self._lines.clear()
        self._size = 0
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.write(data)
                stream.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="hookgate-access-log")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
