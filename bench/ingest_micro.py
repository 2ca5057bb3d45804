"""Server-side CPU of one accepted event, without uvicorn: the ingest endpoint driven
directly, with the bench's 100 rules, its app and the real SQLite writer process (or, with
`--postgres`, the PostgreSQL store in a schema of its own, dropped afterwards).

`make bench` measures throughput end to end, where uvicorn and the kernel's socket work
are about half of the server's time and the machine's noise hides a 5 % change. This
measures only what hookgate adds, as CPU time of this process per request
(`time.process_time`), so one step's cost can be compared before and after a change. The
child processes' CPU (the SQLite writer plus the delivery worker, which sends the events'
deliveries meanwhile) is read from `/proc` and printed as "children".

    python bench/ingest_micro.py [-n 20000] [-c 50] [--repeat 5] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import postgres, procs, workdir
from bench.wrk import EVENT_BODY
from gateway.app import create_app
from gateway.config import load_settings
from gateway.observability.logs import configure_logging

WARMUP = 2000


def _children_cpu(pid: int) -> float:
    """User + system seconds of the child processes of `pid` (the SQLite writer and the
    delivery worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for kid in procs.children(pid):
        try:
            fields = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def run(
    n: int,
    concurrency: int,
    repeat: int,
    work: Path,
    token: str,
    devnull: IO[str],
    extra_env: dict[str, str],
) -> None:
    env = workdir.base_env(work, **extra_env)
    settings = load_settings(env=env)
    # Access lines go where `serve` sends them, a JSON stream (here /dev/null); the child
    # processes inherit a stderr that is /dev/null too (the worker logs every attempt).
    configure_logging("info", stream=devnull)
    app = create_app(settings)
    gateway = app.gateway
    saved = os.dup(2)
    os.dup2(devnull.fileno(), 2)
    try:
        await gateway.start()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    path = f"/api/event/{token}"
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(EVENT_BODY)).encode()),
    ]
    statuses: dict[int, int] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": EVENT_BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    async def client(count: int) -> None:
        for _ in range(count):
            scope = {
                "type": "http",
                "method": "POST",
                "path": path,
                "headers": headers,
                "client": ("127.0.0.1", 50000),
            }
            await app(scope, receive, send)

    async def batch(total: int) -> tuple[float, float, float]:
        per = total // concurrency
        wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu(os.getpid())
        await asyncio.gather(*(client(per) for _ in range(concurrency)))
        done = per * concurrency
        return (
            (time.process_time() - cpu) / done * 1e6,
            (_children_cpu(os.getpid()) - children) / done * 1e6,
            done / (time.perf_counter() - wall),
        )

    try:
        await batch(WARMUP)
        cpus, kids, rates = [], [], []
        for _ in range(repeat):
            cpu, child, rate = await batch(n)
            cpus.append(cpu)
            kids.append(child)
            rates.append(rate)
            print(f"server {cpu:6.1f} us/event  children {child:5.1f} us/event  {rate:7.0f}/s")
        print(
            f"median: server {statistics.median(cpus):.1f} us/event, "
            f"children {statistics.median(kids):.1f} us/event; statuses {statuses}"
        )
    finally:
        await gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("-c", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--postgres", action="store_true", help="the PostgreSQL store")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hookgate-micro-")))
        devnull = stack.enter_context(open(os.devnull, "w"))
        # A loopback port nothing listens on: deliveries fail fast and are not retried.
        workdir.write_rules(work, matching_urls=["http://127.0.0.1:9/hook"])
        extra: dict[str, str] = {}
        if args.postgres:
            schema = stack.enter_context(postgres.bench_schema("micro"))
            token = postgres.create_bench_app(schema)
            extra = {
                "HOOKGATE_STORAGE_BACKEND": "postgres",
                "HOOKGATE_POSTGRES_URL": postgres.schema_url(schema),
            }
        else:
            token = workdir.create_apps(work, ["bench-app"])[0]
        if args.loop == "uvloop":
            import uvloop

            uvloop.install()
        asyncio.run(run(args.n, args.c, args.repeat, work, token, devnull, extra))


if __name__ == "__main__":
    main()
