"""The gateway's live state, built once per app by `create_app` (no module-level state).

`Gateway` owns the store, the app index, the rate limiter, the token-guessing guard, the
live rule set, the dispatcher and its HTTP client, and the background loops that keep
them fresh (app and target changes, rule file edits, retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from actions import (
    Attempt,
    Delivery,
    DeliveryClient,
    Dispatcher,
    EventInfo,
    Lease,
)
from gateway.config import RulesSettings, Settings
from gateway.delivery.alerts import Alerts
from gateway.delivery.host import WorkerHost
from gateway.delivery.wiring import (
    StoreSource,
    build_http_client,
    dispatch_settings,
    probe_held_targets,
)
from gateway.http.appindex import AppIndex
from gateway.http.served_url import forget_served_url, record_served_url
from gateway.limits import keys
from gateway.limits.buckets import Buckets, Decision, MemoryBuckets, RedisBuckets
from gateway.limits.guard import GuessGuard
from gateway.limits.resp import RespClient
from gateway.observability.logs import AccessLog
from gateway.observability.metrics import Metrics
from gateway.rulesets.state import RuleState
from gateway.store import Store, build_store
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


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        http_client: DeliveryClient | None = None,
        freeze_heap: bool = False,
        metrics_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.freeze_heap = freeze_heap
        # One of several uvicorn workers: its counters go where a scrape of any finds them.
        self.metrics = Metrics(metrics_dir)
        self.access = AccessLog()
        self.store: Store = store if store is not None else build_store(settings)
        self.started_at = time.time()
        limits = settings.limits
        self.apps = AppIndex(self.store, limits.app_rate, limits.app_burst)
        self.buckets: Buckets
        self.check_now: Callable[[str, float, int], Decision] | None = None
        if limits.backend == "redis":
            self.buckets = RedisBuckets(
                RespClient(settings.redis.url, timeout=0.5, connect_timeout=0.25),
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
            default_dir=Path(settings.rules.dir) == Path(RulesSettings().dir),
            on_reloaded=self._rules_reloaded,
        )
        delivery = settings.delivery
        self._own_client = http_client is None
        self.http = http_client or build_http_client(settings)
        self.dispatch_settings = dispatch_settings(settings)
        # Inline: this process sends what it accepts. Otherwise `hookgate serve` runs
        # delivery worker processes (gateway.delivery.worker) and this one only queues.
        self.inline_delivery = delivery.workers == 0
        source = StoreSource(
            self.store,
            targets=lambda: self.rules.targets,
            app_name=self.app_name,
            on_target_disabled=lambda: self.rules.refresh_targets(force=True),
            alerts=Alerts(self.store, lambda: self.rules.current, wake=self.wake_delivery),
        )
        # Inline delivery uses this dispatcher's poller; with workers it only serves the
        # target test endpoint, and the workers reach the store through `workers`.
        self.workers = (
            None
            if self.inline_delivery
            else WorkerHost(settings, source, observe=self._observe_outcome)
        )
        self.dispatcher = Dispatcher(
            source,
            self.http,
            self.dispatch_settings,
            env=os.environ,
            observe=self._observe_attempt,
            log_line=self.access.write,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False  # start() has finished (its own rule load is not a reload)
        self._sighup_loop: asyncio.AbstractEventLoop | None = None
        self._sighup_reloads: set[asyncio.Task[object]] = set()
        self._pending_gauge = 0
        self.metrics.gauge("hookgate_rules_loaded", lambda: float(len(self.rules.current)))
        self.metrics.gauge("hookgate_delivery_queue_depth", lambda: float(self._pending_gauge))

    # lifecycle
    async def start(self) -> None:
        self.access.start()
        await self.store.open()
        await self.apps.refresh(force=True)
        await self.rules.reload()
        await self.rules.refresh_targets(force=True)
        if self.workers is None:
            self.dispatcher.start()
        else:
            await self.workers.start()
        settings = self.settings
        self._spawn(self.apps.watch(0.5), "apps")
        self._spawn(self.rules.watch(settings.rules.poll_seconds, settings.rules.reload), "rules")
        self._spawn(self._prune_loop(), "retention")
        self._spawn(self._gauge_loop(), "gauges")
        self._spawn(self._held_loop(), "held-deliveries")
        self._install_sighup()
        record_served_url(settings)
        self._started = True
        self._freeze_heap()

    def _install_sighup(self) -> None:
        """Reload the rules on SIGHUP. Only the main thread may own signal handlers, so a
        gateway served from another thread (tests, embedding) goes without."""
        if (
            not hasattr(signal, "SIGHUP")
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            log.warning("SIGHUP rule reload unavailable: %s", exc)
            return
        self._sighup_loop = loop

    def _on_sighup(self) -> None:
        log.info("SIGHUP received; reloading rules")
        task = asyncio.create_task(self.rules.reload(), name="hookgate-sighup-reload")
        self._sighup_reloads.add(task)
        task.add_done_callback(self._sighup_reloads.discard)

    def _freeze_heap(self) -> None:
        """Put everything alive now out of the cyclic collector's reach (`gc.freeze`).

        The rule set, app index and imported modules live as long as the process, and each
        full collection walked them all: ~30 ms on the bench machine, paid by whichever
        requests were in flight (ingest p99 29-40 ms; frozen, 13-19 ms). `gc.freeze` is
        process-wide, so only a gateway that owns its process (`hookgate serve`) does it.
        """
        if not self.freeze_heap:
            return
        gc.unfreeze()  # what a reload replaced may hold cycles: collect it first
        gc.collect()
        gc.freeze()

    def _rules_reloaded(self) -> None:
        # "reload rules to reset": every successful reload (file change, SIGHUP, API) forgets
        # rule actions disabled after consecutive failures.
        self.dispatcher.reset_rule_failures()
        if self.workers is not None:
            self.workers.reset_rule_failures()
        if self._started:  # start() freezes once, after everything it builds
            self._freeze_heap()

    def _spawn(self, coro: object, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"hookgate-{name}"))  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self.workers is not None:
            # First, while the store is open: stopping workers hand their leases back.
            await self.workers.stop()
        if self._sighup_loop is not None:
            with contextlib.suppress(Exception):
                self._sighup_loop.remove_signal_handler(signal.SIGHUP)
            self._sighup_loop = None
        tasks = (*self._tasks, *self._sighup_reloads)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._started:
            forget_served_url(self.settings)
        self._started = False
        await self.dispatcher.stop()
        if self._own_client:
            await self.http.aclose()
        with contextlib.suppress(Exception):
            await self.buckets.close()
        with contextlib.suppress(Exception):
            await self.guard.close()
        await self.store.close()
        await self.access.stop()
        self.metrics.close()

    # used by ingest and the admin API
    def lease(self) -> Lease | None:
        """Lease for deliveries this process will send itself (inline delivery), one per
        commit; with worker processes, rows are left unleased for a worker to claim."""
        if not self.inline_delivery:
            return None
        return Lease.new(time.time() + self.dispatch_settings.lease_seconds)

    def wake_delivery(self) -> None:
        """Claim now: this process committed deliveries that no process holds yet (internal
        events, ordered deliveries) or that became due outside ingest (a target enabled again)."""
        if self.workers is not None:
            self.workers.wake()
        else:
            self.dispatcher.wake()

    def app_name(self, app_id: str) -> str:
        app = self.apps.by_id.get(app_id)
        return app.name if app else app_id

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

    def dispatch(
        self, deliveries: Sequence[Delivery], event: EventInfo | None, lease: Lease | None
    ) -> None:
        """Hand deliveries committed under `lease` to the inline dispatcher (workers
        poll)."""
        if self.workers is None and lease is not None:
            self.dispatcher.submit(deliveries, event, lease)
        elif self.workers is not None:
            self.workers.wake()

    def _observe_attempt(self, delivery: Delivery, attempt: Attempt, status: str) -> None:
        self._observe_outcome(attempt, status)

    def _observe_outcome(self, attempt: Attempt, status: str) -> None:
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

    async def _held_loop(self) -> None:
        """Probe targets disabled after failures when due; release what active ones hold."""
        while True:
            await asyncio.sleep(self.settings.delivery.poll_seconds)
            try:
                await probe_held_targets(
                    self.store,
                    time.time(),
                    refresh=lambda: self.rules.refresh_targets(force=True),
                    wake=self.wake_delivery,
                )
            except Exception as exc:
                log.warning("probing disabled webhook targets failed: %s", exc)

    async def _gauge_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self._pending_gauge = await self.store.count_pending()
            await asyncio.sleep(5.0)
