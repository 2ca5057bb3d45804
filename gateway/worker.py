"""The delivery worker: a process that sends what ingest queued.

Sending a webhook costs far more CPU than accepting one (an HTTP exchange, signing, a
recorded attempt), so by default `hookgate serve` runs delivery in a child process at a
lower scheduling priority (`delivery.worker_nice`): under a burst the kernel gives the
ingest process the CPU, deliveries wait durably in the store, and they drain as soon as
there is room. The worker shares nothing with the server but the store: it claims due
deliveries with leases, so several workers (or a restarted one) never lose or double-own
a row, and a worker whose server has gone away exits on its own.

`hookgate worker` runs one standalone (e.g. on another host sharing the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from actions import Dispatcher
from gateway.config import Settings
from gateway.delivery import StoreSource, build_http_client, dispatch_settings
from gateway.logs import AccessLog, configure_logging
from gateway.models import WebhookTarget
from gateway.rulestate import dir_stamp
from gateway.store import Store, build_store

log = logging.getLogger("hookgate.worker")

REFRESH_SECONDS = 0.5


class StoreViews:
    """Targets and app names, reloaded when the store says they changed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.targets: dict[str, WebhookTarget] = {}
        self.app_names: dict[str, str] = {}
        self._versions: tuple[int, int] | None = None

    async def refresh(self, force: bool = False) -> None:
        versions = (await self._store.apps_version(), await self._store.targets_version())
        if not force and versions == self._versions:
            return
        self.targets = {t.id: t for t in await self._store.list_targets()}
        self.app_names = {a.id: a.name for a in await self._store.list_apps()}
        self._versions = versions

    def app_name(self, app_id: str) -> str:
        return self.app_names.get(app_id, app_id)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Deliver until `stop` is set (or SIGTERM/SIGINT, or the parent process exits)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    store = build_store(settings)
    await store.open()
    access = AccessLog()
    access.start()
    client = build_http_client(settings)
    views = StoreViews(store)
    await views.refresh(force=True)
    dispatcher = Dispatcher(
        StoreSource(
            store,
            targets=lambda: views.targets,
            app_name=views.app_name,
            on_target_disabled=lambda: views.refresh(force=True),
        ),
        client,
        dispatch_settings(settings),
        env=os.environ,
        log_line=access.write,
    )
    dispatcher.start()
    # Rule actions disabled after consecutive failures come back when the rules change
    # (the server reloads them on the same signals: file edits and SIGHUP).
    rules_dir = Path(settings.rules.dir)
    stamp = dir_stamp(rules_dir)
    with contextlib.suppress(RuntimeError, ValueError, NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, dispatcher.reset_rule_failures)
    log.info("delivery worker started", extra={"fields": {"pid": os.getpid()}})
    parent = os.getppid()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_SECONDS):
                    await stop.wait()
            if os.getppid() != parent and os.environ.get("HOOKGATE_WORKER_OF_PID"):
                log.info("server process is gone; worker exiting")
                break
            try:
                await views.refresh()
            except Exception as exc:
                log.warning("worker refresh failed: %s", exc)
            current = dir_stamp(rules_dir)
            if current != stamp:
                stamp = current
                dispatcher.reset_rule_failures()
    finally:
        await dispatcher.stop()
        await client.aclose()
        await store.close()
        await access.stop()


def main(settings: Settings) -> int:
    """Entry point of `hookgate worker`: configure logging and priority, then deliver."""
    configure_logging(settings.log.level)
    nice = settings.delivery.worker_nice
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    try:
        import uvloop

        uvloop.run(run_worker(settings))
    except ImportError:
        asyncio.run(run_worker(settings))
    return 0


class WorkerPool:
    """Delivery worker child processes of `hookgate serve`, restarted if they die."""

    def __init__(self, count: int, config: str | None) -> None:
        self._count = count
        self._config = config
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "gateway.cli", "worker"]
        if self._config:
            cmd += ["--config", self._config]
        env = {**os.environ, "HOOKGATE_WORKER_OF_PID": str(os.getpid())}
        return subprocess.Popen(cmd, env=env)

    def start(self) -> None:
        self._procs = [self._spawn() for _ in range(self._count)]
        self._thread = threading.Thread(
            target=self._supervise, name="hookgate-workers", daemon=True
        )
        self._thread.start()

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stop.wait(1.0):
            for i, proc in enumerate(self._procs):
                if proc.poll() is not None and not self._stop.is_set():
                    log.error(
                        "delivery worker %d exited with %s; restarting", proc.pid, proc.returncode
                    )
                    time.sleep(min(backoff, 30.0))
                    backoff *= 2
                    self._procs[i] = self._spawn()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
