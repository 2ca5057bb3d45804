"""The base URL a running server hands out, kept in the data dir for the CLI.

`hookgate serve --port 8001` (or `HOOKGATE_SERVER_PORT` set only in the server's
environment) makes event URLs the CLI cannot derive from its own settings; the server writes
its `Settings.base_url` here at start and removes it at a clean stop, so `hookgate apps
create` prints the URL the server would have answered with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from gateway.config import Settings


def served_url_path(settings: Settings) -> Path:
    return settings.data_dir / "served_url"


def record_served_url(settings: Settings) -> None:
    """Write this server's base URL (not for the memory store: no CLI shares it)."""
    if settings.storage.backend == "memory":
        return
    path = served_url_path(settings)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".served_url.{os.getpid()}")
        temporary.write_text(settings.base_url + "\n")
        temporary.replace(path)


def forget_served_url(settings: Settings) -> None:
    if settings.storage.backend == "memory":
        return
    path = served_url_path(settings)
    with contextlib.suppress(OSError):
        if path.read_text().strip() == settings.base_url:
            path.unlink()


def with_served_url(settings: Settings) -> Settings:
    """`settings` whose `base_url` is what the running server hands out, if one runs on
    this data dir; else unchanged (the same public_url/host/port resolution)."""
    try:
        served = served_url_path(settings).read_text().strip()
    except OSError:
        return settings
    if not served:
        return settings
    return dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, public_url=served)
    )
