"""Client-side cost of one delivery: httpx's default transport against the aiohttp client.

Starts a raw-ASGI uvicorn sink in a child process on a free loopback port, then sends
N POSTs with a fixed concurrency, once per client and event loop, and prints requests per
second and the CPU time of this process per request (`time.process_time`; the sink's CPU
is not counted). "aiohttp" goes through `actions.sender.send` exactly as the dispatcher
does (SSRF guard on as the resolver, the sink's loopback in `allowed_networks`); "httpx" is
a plain `httpx.AsyncClient` POST with the same body and headers, the reference point.

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

from actions import AddressPolicy, ClientSettings, DeliveryClient, send

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


async def drive(post: Callable[[], Awaitable[bool]], n: int, concurrency: int) -> int:
    remaining = n
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            if not await post():
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def measure(kind: str, url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    """Requests/s, CPU µs per request and failures for `kind` ("aiohttp" or "httpx")."""
    if kind == "aiohttp":
        client = DeliveryClient(
            ClientSettings(
                concurrency=64,
                per_host_concurrency=concurrency,
                policy=AddressPolicy.build(False, ["127.0.0.0/8"]),
            )
        )

        async def post() -> bool:
            return (await send(client, url, BODY, HEADERS, timeout=10)).ok

        try:
            return await _timed(post, n, concurrency)
        finally:
            await client.aclose()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as http:

        async def post_httpx() -> bool:
            response = await http.post(url, content=BODY, headers=HEADERS, timeout=10)
            return response.is_success

        return await _timed(post_httpx, n, concurrency)


async def _timed(
    post: Callable[[], Awaitable[bool]], n: int, concurrency: int
) -> tuple[float, float, int]:
    await drive(post, WARMUP, concurrency)
    wall, cpu = time.perf_counter(), time.process_time()
    failures = await drive(post, n, concurrency)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6, failures


def run(n: int = 2000, concurrency: int = 8, rounds: int = 3) -> dict[str, float]:
    """`make bench`'s figures: median CPU µs per request for each client (uvloop, as the
    workers run), alternating httpx and aiohttp `rounds` times against one sink."""
    import statistics

    import uvloop

    cpu: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
    with sink_process() as base:
        for _ in range(rounds):
            for kind in cpu:
                _, per_request, failed = uvloop.run(measure(kind, f"{base}/hook", n, concurrency))
                if failed:
                    raise SystemExit(f"transport bench: {failed} of {n} {kind} requests failed")
                cpu[kind].append(per_request)
    out = {f"client_{kind}_cpu_us": statistics.median(v) for kind, v in cpu.items()}
    out["client_cpu_ratio"] = out["client_aiohttp_cpu_us"] / out["client_httpx_cpu_us"]
    return out


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
            for kind in ("httpx", "aiohttp"):
                coroutine = measure(kind, url, args.n, args.concurrency)
                if loop_name == "uvloop":
                    import uvloop

                    rate, cpu, failed = uvloop.run(coroutine)
                else:
                    rate, cpu, failed = asyncio.run(coroutine)
                print(f"{kind:<10} {loop_name:<8} {rate:>8.0f} {cpu:>11.0f} {failed:>7}")


if __name__ == "__main__":
    main()
