"""Client-side CPU of one Redis bucket check: redis-py's asyncio client against
`gateway.limits.resp.RespClient`, both behind `RedisBuckets`.

Runs `checks` checks in groups of `concurrency` (the checks of one group share an
EVALSHA) against the Redis at HOOKGATE_TEST_REDIS_URL, under uvloop, and prints this
process's CPU time per check (`time.process_time`; Redis's own CPU is not counted) and the
wall time per group. Keys live under their own prefix and are deleted afterwards.

    python bench/redis_micro.py [-n 3000] [-c 1 4 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.limits.buckets import RedisBuckets
from gateway.limits.resp import RespClient

URL = os.environ.get("HOOKGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = f"hgmicro:{os.getpid()}:"


async def measure(client: Any, checks: int, concurrency: int) -> tuple[float, float]:
    buckets = RedisBuckets(client, key_prefix=PREFIX, global_rate=1e9, global_burst=10**9)
    try:
        groups = max(1, checks // concurrency)
        for _ in range(100):  # warm: connection, script load
            await asyncio.gather(*(buckets.check("app", 1e9, 10**9) for _ in range(concurrency)))
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(groups):
            await asyncio.gather(*(buckets.check("app", 1e9, 10**9) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu / (groups * concurrency) * 1e6, wall / groups * 1e6
    finally:
        await buckets.close()


async def main(checks: int, concurrencies: list[int]) -> None:
    for concurrency in concurrencies:
        for name, make in (
            ("redis-py", lambda: aioredis.Redis.from_url(URL, socket_timeout=0.5)),
            ("RespClient", lambda: RespClient(URL)),
        ):
            cpu_us, wall_us = await measure(make(), checks, concurrency)
            print(
                f"{name:10} concurrency {concurrency:3}: {cpu_us:6.1f} us CPU per check, "
                f"{wall_us:6.1f} us per group"
            )
    cleanup = aioredis.Redis.from_url(URL)
    async for key in cleanup.scan_iter(match=f"*{PREFIX}*"):
        await cleanup.delete(key)
    await cleanup.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--checks", type=int, default=3000)
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    uvloop.run(main(args.checks, args.concurrency))
