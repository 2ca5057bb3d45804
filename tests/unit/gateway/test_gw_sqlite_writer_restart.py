"""The SQLite writer process is supervised: killed, it is restarted, and while it is down
writes and `ping` fail with `StoreError` instead of hanging (issue 11, item 3)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.store.sqlite.store import SqliteStore


async def _until(check: object) -> None:
    deadline = time.monotonic() + 20.0
    while True:
        try:
            await check()  # type: ignore[operator]
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_a_killed_writer_is_restarted_and_writes_work_again(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hookgate.db", synchronous="normal")
    await store.open()
    try:
        await store.writer_stats()
        first = store._writer
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        await first.wait()
        # Down: refused at once (until the restart, after the 0.5 s first backoff).
        with pytest.raises(StoreError):
            await store.writer_stats()
        with pytest.raises(StoreError):
            await store.ping()
        await _until(store.writer_stats)
        await store.ping()
        assert store._writer is not None and store._writer.pid != first.pid
    finally:
        await store.close()
