"""Real local servers for the actions tests: uvicorn on a free loopback port, and raw sockets.

Everything binds 127.0.0.1 port 0, so runs never clash and no traffic leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

KNOWN_ANSWER = Path(__file__).parents[2] / "data" / "standardwebhooks" / "known-answer.json"
START_DEADLINE_SECONDS = 10.0


@pytest.fixture
def known_answer() -> dict[str, Any]:
    """The Standard Webhooks spec's own test vector."""
    with KNOWN_ANSWER.open(encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file)
    return data


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, *, host: str = "127.0.0.1", **options: Any) -> AsyncIterator[str]:
    """Run `app` under uvicorn in this event loop on a free port; yield its base URL.

    `host` may be an IPv6 literal ("::1"); `options` go to `uvicorn.Config` (e.g. the
    `ssl_certfile` and `ssl_keyfile` of a test certificate, which makes the URL https).
    """
    ipv6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", ws="none", log_level="warning", access_log=False, **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = asyncio.get_running_loop().time() + START_DEADLINE_SECONDS
        while not server.started:
            if task.done():
                task.result()  # surfaces the startup error
            assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        scheme = "https" if options.get("ssl_certfile") else "http"
        yield f"{scheme}://{f'[{host}]' if ipv6 else host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def serve_app() -> Callable[..., contextlib.AbstractAsyncContextManager[str]]:
    return serve


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy in the environment must not see (or break) loopback traffic.
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
