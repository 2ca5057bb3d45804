"""CPU of writing one ingest answer: uvicorn's two `send` calls (start, then body, through
`OneWrite`) against `gateway.http.protocol.respond`, the whole response in one call.

Both run on a `RequestResponseCycle` like the one uvicorn makes per request, over a
transport that drops what it is given, so only the Python work of the answer is timed
(`time.process_time`, per response, the cycle's construction subtracted). Rounds alternate
the variants; medians are printed.

    python bench/respond_micro.py [-n 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.http.protocol import OneWrite, respond

BODY = b'{"accepted":true,"event_id":"evt_0123456789abcdefghijklmnop"}'
JSON = [(b"content-type", b"application/json")]
LIMITS = [(b"ratelimit-limit", b"100"), (b"ratelimit-remaining", b"99"), (b"ratelimit-reset", b"1")]


class Discard(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def run(n: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    transport = Discard()
    writer = OneWrite(transport, loop)
    flow = FlowControl(transport)
    logger = logging.getLogger("bench.respond")

    def cycle() -> RequestResponseCycle:
        return RequestResponseCycle(
            scope={"method": "POST"},  # type: ignore[typeddict-item]
            transport=writer,  # type: ignore[arg-type]
            flow=flow,
            logger=logger,
            access_logger=logger,
            access_log=False,
            default_headers=[(b"date", b"Fri, 04 Dec 2026 19:00:00 GMT")],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=lambda: None,
        )

    async def nothing() -> None:
        cycle()

    async def two_sends() -> None:
        c = cycle()
        headers = [*JSON, (b"content-length", b"%d" % len(BODY)), *LIMITS]
        await c.send({"type": "http.response.start", "status": 202, "headers": headers})
        await c.send({"type": "http.response.body", "body": BODY})

    async def one_respond() -> None:
        await partial(respond, cycle())(202, [*JSON, *LIMITS], BODY)

    variants: dict[str, Callable[[], Awaitable[None]]] = {
        "cycle only": nothing,
        "two sends": two_sends,
        "respond": one_respond,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            started = time.process_time()
            for _ in range(n):
                await step()
            await asyncio.sleep(0)  # OneWrite's end-of-step flushes run inside the timing
            times[name].append((time.process_time() - started) / n * 1e6)
    base = statistics.median(times["cycle only"])
    for name in ("two sends", "respond"):
        median = statistics.median(times[name]) - base
        print(f"{name}: {median:.2f} us per response (median of {rounds}, cycle subtracted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    uvloop.run(run(args.n, args.rounds))


if __name__ == "__main__":
    main()
