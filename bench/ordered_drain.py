"""What FIFO ordering costs a drain: `count` queued deliveries to the loopback sink, sent by
a real gateway (SQLite), unordered and then spread over a number of ordering keys.

An ordered key has one delivery in flight at a time, so a drain over few keys is bounded
by the round trip of each key (claim, send, record), not by the sink; over many keys it
approaches the unordered figure. Not part of `make bench` (the unordered drain there is the
figure ordering must not slow down); run by hand:

    python bench/ordered_drain.py [-n 10000] [--keys 0 2000 100]

`--keys 0` is the unordered drain.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from actions.ids import delivery_id
from actions.model import Delivery
from bench import procs, workdir
from gateway.ids import new_id
from gateway.models import Event


def queue(work: Path, url: str, count: int, keys: int) -> float:
    """Commit one event and `count` due deliveries, key `n % keys` (none when `keys` is 0),
    in accept order; returns the commit time."""

    async def run() -> float:
        store = workdir._store(work)
        await store.open()
        try:
            now = time.time()
            apps = await store.list_apps()
            body = b'{"event_type":"message.inbound"}'
            event = Event(new_id("evt_", now), apps[0].id, "message.inbound", now, body)
            deliveries = [
                Delivery(
                    id=delivery_id(now),
                    event_id=event.id,
                    action_type="forward",
                    url=url,
                    created_at=now,
                    next_attempt_at=now,
                    ordering_key=None if keys == 0 else f"bench#0|{n % keys}",
                )
                for n in range(count)
            ]
            await store.add_event(event, [])
            for start in range(0, count, 2000):
                await store.add_deliveries(deliveries[start : start + 2000])
            return time.time()
        finally:
            await store.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="deliveries per variant")
    parser.add_argument("--keys", type=int, nargs="*", default=[0, 2000, 100])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookgate-ordered-") as name:
        tmp = Path(name)
        with procs.uvicorn_app("bench.sink:app", tmp, "sink") as sink:
            for keys in args.keys:
                work = tmp / f"keys{keys}"
                work.mkdir()
                workdir.write_rules(work, matching_urls=[sink.url + "/hook"])
                workdir.create_apps(work, ["bench-app"])
                with procs.hookgate(work, workdir.base_env(work), f"hookgate-keys{keys}"):
                    count_url = sink.url + "/count"
                    start = int(httpx.get(count_url, trust_env=False).text)
                    queued_at = queue(work, sink.url + "/hook", args.n, keys)
                    deadline = time.monotonic() + 600
                    while int(httpx.get(count_url, trust_env=False).text) - start < args.n:
                        if time.monotonic() > deadline:
                            raise SystemExit("the drain did not finish within 10 minutes")
                        time.sleep(0.05)
                    rate = args.n / (time.time() - queued_at)
                label = "unordered" if keys == 0 else f"{keys} keys"
                print(f"{label:>12}: {args.n} drained at {rate:.0f}/s", flush=True)


if __name__ == "__main__":
    main()
