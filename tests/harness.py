"""Test harness: real servers on free loopback ports, a recording webhook sink, and the
suite-wide watch for leaked secrets and 5xx answers.

Everything binds 127.0.0.1 port 0 (the socket is handed to uvicorn, or to a child process
as an inherited fd), so runs never clash and no traffic leaves the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.http.serving import uvicorn_options
from gateway.observability.logs import JsonFormatter

ADMIN_TOKEN = "test-admin-token"
REPO = Path(__file__).resolve().parents[1]

# Suite-wide evidence, checked once at the end of the session (see conftest.py).
SECRETS: set[str] = set()
LOG_LINES: list[str] = []
LOG_FILES: list[Path] = []
SERVER_ERRORS: list[str] = []


def track_secret(value: str | None) -> None:
    """Remember a token or secret; the session fails if any log line contains it."""
    if value:
        SECRETS.add(value)


class CollectingHandler(logging.Handler):
    """Keeps every log record of the session, formatted as the gateway's JSON lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            LOG_LINES.append(self.format(record))


def make_settings(tmp: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for a test server: data and rules under `tmp`, private targets allowed,
    fast polling; the real environment is ignored."""
    base: dict[str, dict[str, Any]] = {
        "server": {"admin_token": ADMIN_TOKEN, "public_url": "http://127.0.0.1:9"},
        "storage": {"data_dir": str(tmp / "data"), "synchronous": "normal"},
        "rules": {"dir": str(tmp / "rules.d"), "poll_seconds": 0.2},
        "delivery": {
            "allow_private_targets": True,
            "poll_seconds": 0.2,
            "timeout_seconds": 5,
            "workers": 0,
        },
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return load_settings(None, env={}, **base)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


class FiveHundredWatch:
    """ASGI wrapper noting every 5xx the gateway answers (the suite allows none)."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 500:
                SERVER_ERRORS.append(
                    f"{self.name}: {scope.get('method')} {scope.get('route', '')} "
                    f"-> {message['status']}"
                )
            await send(message)

        await self.app(scope, receive, watch)


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, lifespan: str = "on", options: dict[str, Any] | None = None
) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread (its own event loop); yield the base URL.

    `options`: uvicorn settings (a gateway passes `gateway.http.serving.uvicorn_options`, so
    tests run the protocol, header bound and proxy trust that `hookgate serve` runs)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    base = {"log_config": None, "access_log": False, "ws": "none"}
    config = uvicorn.Config(
        app,
        **{**base, **(options or {}), "lifespan": lifespan, "timeout_graceful_shutdown": 2},
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"server did not start: {errors}")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start within 15 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclass
class Gateway:
    """A running gateway (in a thread) and clients for it."""

    base_url: str
    app: Any
    settings: Settings
    admin: httpx.Client
    public: httpx.Client

    @property
    def gw(self) -> Any:
        return self.app.gateway

    def create_app(self, name: str, **fields: Any) -> tuple[str, str]:
        """Create an integration app; returns (app id, token)."""
        response = self.admin.post("/v1/apps", json={"name": name, **fields})
        assert response.status_code == 201, response.text
        body = response.json()
        track_secret(body["token"])
        track_secret(fields.get("signing_secret"))
        return body["id"], body["token"]

    def post_event(self, token: str, payload: Any, **kwargs: Any) -> httpx.Response:
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return self.public.post(f"/api/event/{token}", content=content, headers=headers, **kwargs)


@contextlib.contextmanager
def running_gateway(settings: Settings, **app_kwargs: Any) -> Iterator[Gateway]:
    app = create_app(settings, **app_kwargs)
    options = uvicorn_options(settings)
    with serve_in_thread(FiveHundredWatch(app, "gateway"), options=options) as url:
        auth = {"authorization": f"Bearer {settings.server.admin_token}"}
        with (
            httpx.Client(base_url=url, headers=auth, trust_env=False, timeout=30) as admin,
            httpx.Client(base_url=url, trust_env=False, timeout=30) as public,
        ):
            yield Gateway(url, app, settings, admin, public)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Sink:
    """A real HTTP receiver for outbound webhooks; answers per path as configured."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # response headers by path
    hang: set[str] = field(default_factory=set)  # paths held unanswered until the sink stops
    delays: dict[str, float] = field(default_factory=dict)  # seconds before answering, by path
    default_status: int = 200
    # Awaited per request (in the sink's loop) with the request received: the status to
    # answer, or None for the usual one; for tests whose answer depends on what arrived.
    respond: Callable[[Received], Awaitable[int | None]] | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _closing: threading.Event = field(default_factory=threading.Event)
    _release: Any = None  # asyncio.Event in the sink's loop, made by the first held request
    _loop: Any = None

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def requests_to(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Received]:
        """Block until `count` requests arrived (at `path`, if given); return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.received if path is None or r.path == path]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"sink got {len(got)} of {count} requests in {timeout} s")
                self._cond.wait(remaining)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        received = Received(
            request.method,
            path,
            {k.lower(): v for k, v in request.headers.items()},
            body,
            time.time(),
        )
        with self._cond:
            self.received.append(received)
            self._cond.notify_all()
        chosen = None if self.respond is None else await self.respond(received)
        if path in self.hang:
            await self._hold()
        delay = self.delays.get(path)
        if delay:
            import asyncio

            await asyncio.sleep(delay)
        status = chosen if chosen is not None else self.statuses.get(path, self.default_status)
        return Response(
            b'{"ok":true}',
            status_code=status,
            headers=self.headers.get(path),
            media_type="application/json",
        )

    async def _hold(self) -> None:
        """Never answer while the sink runs; let go at shutdown, so stopping it does not
        wait out uvicorn's graceful-shutdown timeout."""
        import asyncio

        if self._release is None:
            self._loop, self._release = asyncio.get_running_loop(), asyncio.Event()
        if not self._closing.is_set():
            await self._release.wait()

    def _let_go(self) -> None:
        self._closing.set()
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)


@contextlib.contextmanager
def running_sink() -> Iterator[Sink]:
    sink = Sink()
    app = Starlette(routes=[Route("/{path:path}", sink.endpoint, methods=["POST", "PUT", "GET"])])
    with serve_in_thread(app, lifespan="off") as url:
        sink.base_url = url
        try:
            yield sink
        finally:
            sink._let_go()


def rules_dir(tmp: Path, **files: str) -> Path:
    """`tmp/rules.d` holding `files` (name without `.toml` -> its text)."""
    folder = tmp / "rules.d"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def delivery_env(tmp: Path, rules: Path, **extra: str) -> dict[str, str]:
    """What a delivery e2e test's `hookgate serve` runs with: SQLite under `tmp/data`, the
    given rules, loopback targets allowed, a 0.2 s poll; `extra` adds or overrides."""
    return {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
        "HOOKGATE_RULES_DIR": str(rules),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.2",
        **extra,
    }


def store_env(backend: str, request: Any) -> dict[str, str]:
    """The environment choosing the store `backend` ("sqlite", "redis" or "postgres"):
    Redis under the test's own key prefix, PostgreSQL in a schema of the test's own (the
    `redis_url` and `postgres_url` fixtures clean up)."""
    if backend == "sqlite":
        return {}
    if backend == "redis":
        redis: dict[str, Any] = request.getfixturevalue("redis_url")
        return {
            "HOOKGATE_STORAGE_BACKEND": "redis",
            "HOOKGATE_REDIS_URL": redis["url"],
            "HOOKGATE_REDIS_KEY_PREFIX": redis["prefix"],
        }
    if backend == "postgres":
        pg: dict[str, Any] = request.getfixturevalue("postgres_url")
        return {
            "HOOKGATE_STORAGE_BACKEND": "postgres",
            "HOOKGATE_POSTGRES_URL": f"{pg['url']}?search_path={pg['schema']}",
        }
    raise ValueError(f"unknown store backend {backend!r}")


class ServerProcess:
    """`hookgate serve` in a child process on an inherited socket (for kill -9 tests and
    several gateways sharing Redis). Its stderr goes to a file scanned for leaks."""

    def __init__(self, tmp: Path, env: dict[str, str], name: str = "server") -> None:
        self.tmp = tmp
        self.env = env
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.log_path = tmp / f"{name}-{len(LOG_FILES)}.log"
        self._n = 0

    def start(self) -> str:
        sock = free_socket()
        sock.listen(128)
        port = sock.getsockname()[1]
        self._n += 1
        self.log_path = self.tmp / f"{self.name}-{self._n}.log"
        LOG_FILES.append(self.log_path)
        env = {**os.environ, **self.env}
        env.setdefault("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "serve",
                    "--fd",
                    str(sock.fileno()),
                    "--port",
                    str(port),
                ],
                cwd=self.tmp,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
            )
        sock.close()
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(self.base_url + "/readyz", timeout=1, trust_env=False).status_code
                    == 200
                ):
                    return self.base_url
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin(self) -> httpx.Client:
        token = self.env.get("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        return httpx.Client(
            base_url=self.base_url,
            trust_env=False,
            timeout=30,
            headers={"authorization": f"Bearer {token}"},
        )


def children(pid: int, needle: str) -> list[int]:
    """Pids of the direct children of `pid` whose command line contains `needle` (a
    server's delivery workers, its SQLite writer), read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and needle in cmdline:
            found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def scan_for_leaks() -> list[str]:
    """Every (secret prefix, log line) where a tracked secret appears in a log."""
    texts = list(LOG_LINES)
    for path in LOG_FILES:
        with contextlib.suppress(OSError):
            texts.extend(path.read_text(errors="replace").splitlines())
    leaks = []
    for secret in SECRETS:
        for line in texts:
            if secret in line:
                leaks.append(f"{secret[:6]}…: {line[:200]}")
                break
    for line in texts:
        if '"status":5' in line and '"logger":"hookgate.access"' in line:
            leaks.append(f"5xx answered: {line[:200]}")
    return leaks
