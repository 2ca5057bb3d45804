"""Structured logging: one JSON object per line on stderr.

Request and delivery lines carry their fields in `extra={"fields": {...}}`. Nothing here
ever sees a token or a secret: the ingest route logs its route template, not its path.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS = "hookgate.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """Route the `hookgate` loggers (and uvicorn's error log) to JSON lines on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("hookgate", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # uvicorn's access log prints the request path, and an event URL's path is a secret.
    logging.getLogger("uvicorn.access").disabled = True
