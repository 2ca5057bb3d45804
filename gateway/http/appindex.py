"""Apps by token hash, in memory, refreshed from the store.

The ingest path never touches the store to find an app: it hashes the token and looks the
hash up here. Everything an app needs per request (limits, compiled schema, signature
verifier) is precomputed when the index is built. The index polls the store's app version
so tokens created by the CLI, another process or the API are accepted within a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from actions import ActionError
from gateway.http.signatures import InboundVerifier, RefuseAll, verifier
from gateway.models import App
from gateway.store.base import Store

log = logging.getLogger("hookgate.apps")


@dataclass(frozen=True, slots=True)
class AppEntry:
    """An app as the ingest path needs it."""

    app: App
    rate: float
    burst: int
    validator: Callable[[Any], Any] | None
    verifier: InboundVerifier | None
    expires_at: float | None = None  # set for a rotated-out token still in its grace period


def compile_schema(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """Compile a JSON Schema once; raises fastjsonschema.JsonSchemaDefinitionException."""
    validate: Callable[[Any], Any] = fastjsonschema.compile(schema)
    return validate


class AppIndex:
    def __init__(self, store: Store, default_rate: float, default_burst: int) -> None:
        self._store = store
        self._default_rate = default_rate
        self._default_burst = default_burst
        self.by_hash: dict[str, AppEntry] = {}
        self.by_id: dict[str, App] = {}
        self._version: int | None = None

    def entry(self, app: App, expires_at: float | None = None) -> AppEntry:
        validator = None
        if app.schema is not None:
            try:
                validator = compile_schema(app.schema)
            except Exception:  # validated at creation; a bad stored schema must not stop ingest
                log.error("stored schema of app %s does not compile; ignoring it", app.id)
        return AppEntry(
            app=app,
            rate=app.rate if app.rate is not None else self._default_rate,
            burst=app.burst if app.burst is not None else self._default_burst,
            validator=validator,
            verifier=_verifier(app) if app.signing_secret else None,
            expires_at=expires_at,
        )

    def lookup(self, token_hash: str) -> AppEntry | None:
        entry = self.by_hash.get(token_hash)
        if entry is None or not entry.app.enabled:
            return None
        if entry.expires_at is not None and time.time() >= entry.expires_at:
            return None
        return entry

    async def refresh(self, force: bool = False) -> bool:
        """Rebuild the index if any app changed since the last build; True if rebuilt."""
        version = await self._store.apps_version()
        if not force and version == self._version:
            return False
        apps = await self._store.list_apps()
        by_hash: dict[str, AppEntry] = {}
        for app in apps:
            entry = self.entry(app)
            by_hash[app.token_hash] = entry
            if app.previous_token_hash and app.previous_token_expires_at:
                by_hash[app.previous_token_hash] = AppEntry(
                    app=entry.app,
                    rate=entry.rate,
                    burst=entry.burst,
                    validator=entry.validator,
                    verifier=entry.verifier,
                    expires_at=app.previous_token_expires_at,
                )
        self.by_hash = by_hash  # one assignment: a request sees the old or the new index
        self.by_id = {app.id: app for app in apps}
        self._version = version
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("app index refresh failed: %s", exc)


def _verifier(app: App) -> InboundVerifier:
    """The app's verifier; a stored secret or scheme that cannot be used fails closed."""
    try:
        return verifier(app.signature_scheme, app.signing_secret or "")
    except (ActionError, ValueError) as exc:
        log.error("app %s: cannot verify signatures (%s); refusing its events", app.id, exc)
        return RefuseAll()
