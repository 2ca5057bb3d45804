"""A lean, pipelined RESP2 connection for the Redis rate limiter's hot path.

redis-py's asyncio client spends about 200 us of CPU per command on this path (pool
checkout, a lock, a timeout context per read: `python bench/redis_micro.py`), more than the
rest of an ingest request. The bucket check needs none of it: one EVALSHA at a time (see
`RedisBuckets.check`) on one long-lived connection. This client keeps that connection,
writes each command as it comes, matches replies in order (Redis answers a connection's
commands in order) and parses them with hiredis, redis-py's own C parser.

Errors are redis-py's exception types, so callers handle both clients alike: a refused or
lost connection is `ConnectionError`, no answer within `timeout` is `TimeoutError` (and
drops the connection: later replies could no longer be matched), an error reply is
`ResponseError` (`NoScriptError` for NOSCRIPT). The next call reconnects.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import ssl
from collections.abc import Mapping
from typing import Any, cast

import hiredis
from redis.asyncio.connection import RedisSSLContext
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

Arg = str | bytes | int | float

# The TLS options of a `rediss://` URL's query string, as redis-py reads them, and the
# names of `RedisSSLContext`'s parameters they become.
TLS_OPTIONS = {
    "ssl_cert_reqs": "cert_reqs",
    "ssl_ca_certs": "ca_certs",
    "ssl_ca_data": "ca_data",
    "ssl_ca_path": "ca_path",
    "ssl_certfile": "certfile",
    "ssl_keyfile": "keyfile",
    "ssl_password": "password",
    "ssl_check_hostname": "check_hostname",
    "ssl_min_version": "min_version",
    "ssl_ciphers": "ciphers",
}


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py would build for these parsed URL options (the same class
    builds it, so the limiter's connection trusts, presents and checks exactly what the
    store's and the guard's do): certificates required and the host name checked unless
    the URL says otherwise."""
    given = {name: options[key] for key, name in TLS_OPTIONS.items() if key in options}
    given.setdefault("cert_reqs", "required")
    given.setdefault("check_hostname", True)
    return RedisSSLContext(**given).get()


def pack(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _reply_error(reply: hiredis.ReplyError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream cannot be trusted
                self._fail(ConnectionError("unexpected reply from Redis"))
                return
            future = self.waiting.popleft()
            if future.done():  # timed out meanwhile; the connection is being dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_reply_error(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def _fail(self, error: Exception) -> None:
        self.lost = True
        for future in self.waiting:
            if not future.done():
                future.set_exception(error)
        self.waiting.clear()
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """One Redis connection with the few calls the rate limiter makes.

    `url` is a redis-py URL (`redis://[user:password@]host:port/db`, `rediss://` for TLS,
    `unix:///path?db=N`).
    """

    def __init__(self, url: str, *, timeout: float = 0.5, connect_timeout: float = 0.25) -> None:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        self._host: str = options.get("host", "127.0.0.1")
        self._port: int = int(options.get("port", 6379))
        self._path: str | None = options.get("path")
        self._db = int(options.get("db", 0) or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        # Built now: a bad certificate path fails at start, not at the first bucket check.
        self._tls: ssl.SSLContext | None = (
            tls_context(options) if options.get("connection_class") is SSLConnection else None
        )
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def call(self, *args: Arg) -> Any:
        """Send one command and return its reply."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connection()
        return await self._send(protocol, pack(args))

    async def script_load(self, script: str) -> str:
        sha = await self.call("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def evalsha(self, sha: str, numkeys: int, *args: Arg) -> Any:
        return await self.call("EVALSHA", sha, numkeys, *args)

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    def _send(self, protocol: _Protocol, data: bytes) -> asyncio.Future[Any]:
        loop = self._loop
        assert loop is not None and protocol.transport is not None
        future: asyncio.Future[Any] = loop.create_future()
        protocol.waiting.append(future)
        protocol.transport.write(data)
        timer = loop.call_later(self._timeout, self._expire, protocol, future)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    def _expire(self, protocol: _Protocol, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(TimeoutError(f"Redis did not answer within {self._timeout} s"))
            protocol._fail(ConnectionError("connection dropped after a Redis timeout"))

    async def _connection(self) -> _Protocol:
        # Concurrent callers share one connection attempt.
        if self._connecting is None:
            self._loop = asyncio.get_running_loop()
            self._connecting = self._loop.create_future()
            try:
                protocol = await self._connect()
            except BaseException as exc:
                self._connecting.set_exception(exc)
                self._connecting.exception()  # retrieved here; waiters get it too
                self._connecting = None
                raise
            self._protocol = protocol
            self._connecting.set_result(protocol)
            self._connecting = None
            return protocol
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        loop = self._loop
        assert loop is not None
        try:
            if self._path is not None:
                connecting = loop.create_unix_connection(_Protocol, self._path)
            else:
                connecting = loop.create_connection(
                    _Protocol, self._host, self._port, ssl=self._tls
                )
            _, protocol = await asyncio.wait_for(connecting, self._connect_timeout)
        except builtins.TimeoutError:
            raise TimeoutError(f"no connection to Redis within {self._connect_timeout} s") from None
        except OSError as exc:
            raise ConnectionError(f"cannot connect to Redis: {exc}") from exc
        try:
            setup: list[asyncio.Future[Any]] = []
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                setup.append(self._send(protocol, pack(("AUTH", *auth))))
            if self._db:
                setup.append(self._send(protocol, pack(("SELECT", self._db))))
            for future in setup:
                await future
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        return protocol
