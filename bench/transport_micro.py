"""Client-side cost of one delivery: httpx's default transport against `FastTransport`.

Starts a raw-ASGI uvicorn sink in a child process on a free loopback port, then sends
N POSTs (through `actions.sender.send`, as the dispatcher does) with a fixed concurrency,
once per transport and event loop, and prints requests per second and the CPU time of this
process per request (`time.process_time`; the sink's CPU is not counted).

    python bench/transport_micro.py [-n 5000] [-c 8] [--loop asyncio|uvloop|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actions.sender import send
from actions.transport import FastTransport

BODY = b'{"id":"evt_01","type":"job_completed","app":"bench","data":{"phone":"+15551234567"}}'
HEADERS = {"Content-Type": "application/json", "User-Agent": "hookgate/bench"}
WARMUP = 300

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def sink(scope: dict[str, Any], receive: Receive, send_: Send) -> None:
    """Read the body, answer 200 with a short body: the least a webhook receiver does."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send_(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send_({"type": "http.response.body", "body": b"ok"})


def run_sink() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        sink,
        lifespan="off",
        ws="none",
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def sink_process() -> Iterator[str]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.post(f"{base}/ready", content=b"{}", trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield base
    finally:
        child.terminate()
        child.wait(10)


async def drive(client: httpx.AsyncClient, url: str, n: int, concurrency: int) -> int:
    remaining = n
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            attempt = await send(client, url, BODY, HEADERS, timeout=10)
            if not attempt.ok:
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def measure(kind: str, url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    transport = (
        FastTransport(max_connections=64, max_per_host=concurrency) if kind == "fast" else None
    )
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(transport=transport, limits=limits, trust_env=False) as client:
        await drive(client, url, WARMUP, concurrency)
        wall, cpu = time.perf_counter(), time.process_time()
        failures = await drive(client, url, n, concurrency)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    try:
        import sniffio  # noqa: F401
    except ImportError:
        print("note: sniffio is not installed; httpcore pays a failed import per request")
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    with sink_process() as base:
        url = f"{base}/hook"
        print(f"{args.n} POSTs, concurrency {args.concurrency}, sink {base}")
        print(f"{'transport':<10} {'loop':<8} {'req/s':>8} {'CPU µs/req':>11} {'failed':>7}")
        for loop_name in loops:
            for kind in ("httpx", "fast"):
                coroutine = measure(kind, url, args.n, args.concurrency)
                if loop_name == "uvloop":
                    import uvloop

                    rate, cpu, failed = uvloop.run(coroutine)
                else:
                    rate, cpu, failed = asyncio.run(coroutine)
                print(f"{kind:<10} {loop_name:<8} {rate:>8.0f} {cpu:>11.0f} {failed:>7}")


if __name__ == "__main__":
    main()
