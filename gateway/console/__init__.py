"""The operator console at `/console`: server-rendered pages over the admin operations."""

from gateway.console.app import build_console

__all__ = ["build_console"]
