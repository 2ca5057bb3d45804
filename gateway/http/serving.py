"""Running the gateway under uvicorn: one set of server options for `hookgate serve`, its
multi-worker path and the test harness, the port bound before the banner, a quiet stop.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import tempfile
from typing import Any

from gateway.config import Settings
from gateway.http.protocol import REQUEST_LINE_BYTES

BACKLOG = 2048  # uvicorn's default
# Where `serve` tells its uvicorn workers to keep their metrics (not a setting: made per run).
METRICS_DIR_ENV = "HOOKGATE_INTERNAL_METRICS_DIR"


class Terminated(Exception):
    """SIGTERM, re-raised by uvicorn once its graceful shutdown is done."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


class ListenError(Exception):
    """The server's address cannot be bound; the message is the sentence to print."""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every hookgate server hands uvicorn.

    - `http`: httptools with bounded headers, upgrade requests served as plain HTTP/1.1
      (`gateway.http.protocol`); `ws="none"`: websockets are not part of the product, so an
      upgrade never reaches uvicorn's websocket protocol (nor its path-bearing log line).
    - `proxy_headers` only with `server.forwarded_allow_ips`: uvicorn otherwise trusts
      `X-Forwarded-For` from 127.0.0.1, and a sender on this host could pose as any address.
    """
    trusted = list(settings.server.forwarded_allow_ips)
    options: dict[str, Any] = {
        "http": "gateway.http.protocol:HookgateHttpProtocol",
        "ws": "none",
        "h11_max_incomplete_event_size": settings.ingest.max_header_bytes + REQUEST_LINE_BYTES,
        "proxy_headers": bool(trusted),
        "access_log": False,
        "log_config": None,
        "server_header": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if trusted:
        options["forwarded_allow_ips"] = "*" if "*" in trusted else trusted
    return options


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or ListenError (bound here so that the banner is
    printed only once the port is ours, and a busy port is one clear sentence)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"{host}:{port} is already in use") from None
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def listen(settings: Settings, fd: int | None = None) -> socket.socket:
    """The server's socket: the inherited `fd`, else `server.host:port` bound now."""
    if fd is not None:
        return socket.socket(fileno=fd)
    return bind(settings.server.host, settings.server.port)


def serve(settings: Settings, sock: socket.socket, *, config_path: str | None = None) -> int:
    """Serve on `sock` until SIGINT or SIGTERM; the exit status for `hookgate serve`."""
    import uvicorn

    from gateway.app import create_app

    port = sock.getsockname()[1]
    print(f"hookgate listening on http://{settings.server.host}:{port}", flush=True)
    options = uvicorn_options(settings)
    cleanup: list[str] = []
    try:
        if settings.server.workers > 1:
            if config_path:
                os.environ["HOOKGATE_CONFIG"] = config_path
            metrics_dir = tempfile.mkdtemp(prefix="hookgate-metrics-")
            cleanup.append(metrics_dir)
            os.environ[METRICS_DIR_ENV] = metrics_dir
            uvicorn.run(
                "gateway.app:create_app_from_env",
                factory=True,
                workers=settings.server.workers,
                fd=sock.fileno(),
                **options,
            )
        else:
            config = uvicorn.Config(create_app(settings, freeze_heap=True), **options)
            server = uvicorn.Server(config)
            # uvicorn restores this handler after its shutdown and raises the signal again:
            # ours turns it into the same one-line stop as Ctrl-C instead of a bare kill.
            signal.signal(signal.SIGTERM, _terminated)
            server.run(sockets=[sock])
            if not server.started:  # the lifespan failed; uvicorn has logged why
                return 3
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down for
        print("hookgate stopped", flush=True)
        return 130
    except Terminated:
        print("hookgate stopped", flush=True)
        return 143
    finally:
        sock.close()
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
    print("hookgate stopped", flush=True)
    return 0
