"""The gateway's live state, built once per app by `create_app` (no module-level state).

`Gateway` owns the store, the app index, the rate limiter, the token-guessing guard, the
live rule set, the dispatcher and its HTTP client, and the background loops that keep
them fresh (app and target changes, rule file edits, retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from actions import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Dispatcher,
    DispatchSettings,
    EventInfo,
    TargetInfo,
)
from gateway import keys
from gateway.appindex import AppIndex
from gateway.config import Settings
from gateway.guard import GuessGuard
from gateway.metrics import Metrics
from gateway.ratelimit import Buckets, Decision, MemoryBuckets, RedisBuckets
from gateway.rulestate import RuleState
from gateway.store import Store, build_store
from gateway.version import __version__
from rules import Logic

log = logging.getLogger("hookgate")

PRUNE_INTERVAL = 3600.0


def admin_token_path(settings: Settings) -> Path:
    return settings.data_dir / "admin_token"


def ensure_admin_token(settings: Settings) -> tuple[str, bool]:
    """The configured admin token, else the one kept in the data dir, else a new one
    written there (mode 0600). Returns (token, newly_generated)."""
    if settings.server.admin_token:
        return settings.server.admin_token, False
    path = admin_token_path(settings)
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "hgadm_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True


class _StoreSource:
    """Adapts the store (plus in-memory app and target views) to `DeliverySource`."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def claim_due(self, now: float, limit: int, lease_until: float) -> list[Delivery]:
        return await self._gw.store.claim_due(now, limit, lease_until)

    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
    ) -> None:
        await self._gw.store.finish_attempt(delivery_id, attempt, status, next_attempt_at)

    async def release(self, delivery_ids: list[str]) -> None:
        await self._gw.store.release(delivery_ids)

    async def event_info(self, event_id: str) -> EventInfo | None:
        event = await self._gw.store.get_event(event_id)
        if event is None:
            return None
        return self._gw.event_info(
            event.id, event.app_id, event.event_type, event.received_at, event.payload
        )

    def target(self, target_id: str) -> TargetInfo | None:
        target = self._gw.rules.targets.get(target_id)
        if target is None:
            return None
        return TargetInfo(target.secret, target.status == "active", target.disable_after)

    async def target_outcome(
        self, target_id: str, ok: bool, disable_after: int | None, gone: bool
    ) -> None:
        updated = await self._gw.store.record_target_outcome(target_id, ok, disable_after, gone)
        if updated is not None and updated.status != "active":
            log.warning(
                "webhook target disabled",
                extra={"fields": {"target_id": target_id, "gone": gone}},
            )
            await self._gw.rules.refresh_targets(force=True)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store: Store = store if store is not None else build_store(settings)
        self.started_at = time.time()
        limits = settings.limits
        self.apps = AppIndex(self.store, limits.app_rate, limits.app_burst)
        self.buckets: Buckets
        self.check_now: Callable[[str, float, int], Decision] | None = None
        if limits.backend == "redis":
            client = aioredis.Redis.from_url(
                settings.redis.url,
                socket_connect_timeout=0.25,
                socket_timeout=0.5,
                retry_on_timeout=False,
            )
            self.buckets = RedisBuckets(
                client,
                key_prefix=settings.redis.key_prefix,
                global_rate=limits.global_rate,
                global_burst=limits.global_burst,
                on_error=limits.on_redis_error,
                metrics=self.metrics,
            )
            self.guard = GuessGuard.with_redis(
                limits.unknown_token_per_minute,
                settings.redis.url,
                keys.guard_prefix(settings.redis.key_prefix),
            )
        else:
            memory = MemoryBuckets(limits.global_rate, limits.global_burst)
            self.buckets = memory
            self.check_now = memory.check_now
            self.guard = GuessGuard(limits.unknown_token_per_minute)
        self.logic = Logic(default_region=settings.rules.default_region)
        self.rules = RuleState(
            settings.rules.dir,
            store=self.store,
            logic=self.logic,
            event_type_fields=settings.ingest.event_type_fields,
            metrics=self.metrics,
        )
        delivery = settings.delivery
        self._own_client = http_client is None
        self.http = http_client or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=delivery.concurrency,
                max_keepalive_connections=delivery.concurrency,
            ),
            timeout=delivery.timeout_seconds,
            follow_redirects=False,
            trust_env=False,
        )
        self.dispatch_settings = DispatchSettings(
            timeout_seconds=delivery.timeout_seconds,
            concurrency=delivery.concurrency,
            per_host_concurrency=delivery.per_host_concurrency,
            allow_private_targets=delivery.allow_private_targets,
            poll_seconds=delivery.poll_seconds,
            lease_seconds=delivery.lease_seconds,
            user_agent=f"hookgate/{__version__}",
        )
        self.dispatcher = Dispatcher(
            _StoreSource(self),
            self.http,
            self.dispatch_settings,
            env=os.environ,
            observe=self._observe_attempt,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_gauge = 0
        self.metrics.gauge("hookgate_rules_loaded", lambda: float(len(self.rules.current)))
        self.metrics.gauge("hookgate_delivery_queue_depth", lambda: float(self._pending_gauge))

    # lifecycle
    async def start(self) -> None:
        await self.store.open()
        await self.apps.refresh(force=True)
        await self.rules.reload()
        await self.rules.refresh_targets(force=True)
        self.dispatcher.start()
        settings = self.settings
        self._spawn(self.apps.watch(0.5), "apps")
        self._spawn(self.rules.watch(settings.rules.poll_seconds, settings.rules.reload), "rules")
        self._spawn(self._prune_loop(), "retention")
        self._spawn(self._gauge_loop(), "gauges")

    def _spawn(self, coro: object, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"hookgate-{name}"))  # type: ignore[arg-type]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.dispatcher.stop()
        if self._own_client:
            await self.http.aclose()
        with contextlib.suppress(Exception):
            await self.buckets.close()
        await self.store.close()

    # used by ingest and the admin API
    def lease_until(self) -> float:
        return time.time() + self.dispatch_settings.lease_seconds

    def event_info(
        self,
        event_id: str,
        app_id: str,
        event_type: str | None,
        received_at: float,
        payload: bytes,
    ) -> EventInfo:
        app = self.apps.by_id.get(app_id)
        return EventInfo(event_id, event_type, app.name if app else app_id, received_at, payload)

    def dispatch(self, deliveries: Sequence[Delivery], event: EventInfo | None = None) -> None:
        self.dispatcher.submit(deliveries, event)

    def _observe_attempt(self, delivery: Delivery, attempt: Attempt, status: str) -> None:
        self.metrics.inc("hookgate_deliveries_total", outcome=status)
        if attempt.status_code is not None:
            self.metrics.observe("hookgate_delivery_latency_seconds", attempt.latency_ms / 1000)

    async def _prune_loop(self) -> None:
        while True:
            try:
                now = time.time()
                dropped = await self.store.prune(
                    now - self.settings.storage.retention_days * 86400,
                    now - self.settings.ingest.idempotency_ttl_seconds,
                )
                if dropped:
                    log.info("retention", extra={"fields": {"events_pruned": dropped}})
            except Exception as exc:
                log.warning("retention pruning failed: %s", exc)
            await asyncio.sleep(PRUNE_INTERVAL)

    async def _gauge_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self._pending_gauge = await self.store.count_pending()
            await asyncio.sleep(5.0)
