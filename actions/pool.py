"""The connection pool behind `FastTransport`: slots per origin and in all, idle connections,
and the FIFO queue of requests waiting for either.

A slot is counted from the moment it is granted (before the connection is even open), so the
caps hold while connections are being made. Requests queue in arrival order; a grant goes to
the first waiter it can serve (one blocked by its host's cap does not hold up another host).
Every path that ends a request, cancellation included, gives its slot or connection back.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

from actions.connection import Connection

Origin = tuple[str, str, int]  # (scheme, host, port)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connections open or being opened, how many of them are idle, requests queued."""

    connections: int
    idle: int
    waiting: int


class Grant(enum.Enum):
    SLOT = "slot"  # the caller may open a new connection; the slot is already counted
    BLOCKED = "blocked"
    TIMED_OUT = "timed out"


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(Grant.TIMED_OUT)


class _HostPool:
    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.idle: list[Connection] = []  # most recently used last
        self.count = 0  # connections of this origin, including ones being opened


class ConnectionPool:
    """Connection slots, idle connections and the FIFO queue of requests waiting for either."""

    def __init__(self, max_connections: int, max_per_host: int, keepalive_expiry: float) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.keepalive_expiry = keepalive_expiry
        self.hosts: dict[Origin, _HostPool] = {}
        self.total = 0
        self.idle_total = 0
        self.live: set[Connection] = set()
        self.waiters: deque[tuple[Origin, asyncio.Future[Any]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None

    def stats(self) -> PoolStats:
        return PoolStats(self.total, self.idle_total, len(self.waiters))

    def try_grant(self, origin: Origin, *, fresh: bool = False) -> Connection | Grant:
        """An idle connection, a new slot, or BLOCKED. `fresh` closes the origin's idle
        connections instead of reusing them: after one turned out stale, so may the rest."""
        host = self.hosts.get(origin)
        if host is not None and host.idle:
            idle = host.idle
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                self.idle_total -= 1
                conn.idle = False
                if not fresh and conn.usable(now, self.keepalive_expiry):
                    return conn
                self.discard(conn, serve=False)
            host = self.hosts.get(origin)  # gone if that was its last connection
        count = 0 if host is None else host.count
        if count >= self.max_per_host:
            return Grant.BLOCKED
        if self.total >= self.max_connections and not self._evict_idle():
            return Grant.BLOCKED
        if host is None:
            host = self.hosts[origin] = _HostPool()
        host.count += 1
        self.total += 1
        return Grant.SLOT

    async def acquire(self, origin: Origin, limit: float | None, fresh: bool) -> Connection | Grant:
        """An idle connection of `origin`, or `Grant.SLOT` to open one; waits its turn for up
        to `limit` seconds (`httpx.PoolTimeout`)."""
        if not self.waiters:
            grant = self.try_grant(origin, fresh=fresh)
            if grant is not Grant.BLOCKED:
                return grant
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        entry = (origin, future)
        self.waiters.append(entry)
        self.serve()
        if future.done():
            granted: Connection | Grant = future.result()
            return granted
        handle = None if limit is None else loop.call_later(limit, _expire, future)
        try:
            result = await future
        except BaseException:
            if entry in self.waiters:
                self.waiters.remove(entry)
            if future.done() and not future.cancelled():
                self.give_back(origin, future.result())
            raise
        finally:
            if handle is not None:
                handle.cancel()
        if result is Grant.TIMED_OUT:
            self.waiters.remove(entry)
            raise httpx.PoolTimeout("timed out waiting for a connection from the pool")
        assert isinstance(result, Connection | Grant)
        return result

    def give_back(self, origin: Origin, grant: Any) -> None:
        if isinstance(grant, Connection):
            self.release(grant)
        elif grant is Grant.SLOT:
            self.free_slot(origin)

    def serve(self) -> None:
        """Hand out what became free to the waiters, first come first served."""
        waiters = self.waiters
        if not waiters:
            return
        for entry in list(waiters):
            origin, future = entry
            if future.done():
                continue
            grant = self.try_grant(origin)
            if grant is Grant.BLOCKED:
                if self.total >= self.max_connections and not self.idle_total:
                    return
                continue
            waiters.remove(entry)
            future.set_result(grant)

    def free_slot(self, origin: Origin) -> None:
        self._uncount(origin)
        self.serve()

    def _uncount(self, origin: Origin) -> None:
        host = self.hosts[origin]
        host.count -= 1
        self.total -= 1
        if not host.count:
            del self.hosts[origin]  # origins come and go: keep only those in use

    def adopt(self, conn: Connection) -> None:
        conn.counted = True
        self.live.add(conn)

    def release(self, conn: Connection) -> None:
        """Back to the pool if the connection can carry another request, else closed."""
        conn.finished()
        if conn.closed or conn.broken or not conn.keep_alive or not conn.counted:
            self.discard(conn)
            return
        loop = asyncio.get_running_loop()
        conn.idle = True
        conn.idle_since = loop.time()
        self.hosts[conn.origin].idle.append(conn)
        self.idle_total += 1
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive_expiry, self._sweep)
        if self.waiters:
            self.serve()

    def discard(self, conn: Connection, *, serve: bool = True) -> None:
        """Close `conn` at once and free its slot (idempotent)."""
        conn.close(graceful=False)
        if conn.idle:
            conn.idle = False
            self.hosts[conn.origin].idle.remove(conn)
            self.idle_total -= 1
        if conn.counted:
            conn.counted = False
            self.live.discard(conn)
            self._uncount(conn.origin)
            if serve:
                self.serve()

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection of any origin to make room; False if none."""
        oldest: Connection | None = None
        for host in self.hosts.values():
            if host.idle and (oldest is None or host.idle[0].idle_since < oldest.idle_since):
                oldest = host.idle[0]
        if oldest is None:
            return False
        self.discard(oldest, serve=False)
        return True

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        soonest: float | None = None
        for host in list(self.hosts.values()):
            for conn in list(host.idle):
                if now - conn.idle_since >= self.keepalive_expiry:
                    conn.close(graceful=True)
                    self.discard(conn, serve=False)
                elif soonest is None or conn.idle_since < soonest:
                    soonest = conn.idle_since
        if soonest is not None:
            delay = max(soonest + self.keepalive_expiry - now, 0.01)
            self._sweeper = loop.call_later(delay, self._sweep)
        self.serve()

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.live):
            conn.close(graceful=conn.idle)
            self.discard(conn, serve=False)
        self.serve()
