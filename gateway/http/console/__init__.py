"""The operator console at `/console`: server-rendered pages over the admin operations."""

from gateway.http.console.app import build_console

__all__ = ["build_console"]
