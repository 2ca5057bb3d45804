"""One HTTP/1.1 client connection: an asyncio protocol feeding the httptools (llhttp) parser.

The protocol keeps the state of the one response in flight (status, headers, body chunks as
they arrive) and wakes the task reading it; it never raises into the event loop. What went
wrong is kept as an httpx exception for the reader to raise, so the mapping from socket and
parser errors to httpx's tree happens here and in `actions.transport`, nowhere else.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools
import httpx

if TYPE_CHECKING:
    from actions.pool import ConnectionPool, Origin

MAX_HEAD_BYTES = 100 * 1024  # h11's limit for an incomplete status line and headers
READ_HIGH_WATER = 256 * 1024  # unread body buffered before the socket stops being read


class StaleConnection(Exception):
    """A reused connection was closed by the server before any byte of the answer."""


def wake(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class Connection(asyncio.Protocol):
    """One socket to one origin, and the state of the response it is reading."""

    __slots__ = (
        "_drain",
        "_loop",
        "_parser",
        "_paused",
        "_waiter",
        "broken",
        "buffered",
        "chunks",
        "closed",
        "complete",
        "counted",
        "error",
        "head_only",
        "headers",
        "headers_done",
        "http_version",
        "idle",
        "idle_since",
        "informational",
        "keep_alive",
        "lost",
        "origin",
        "pool",
        "reason",
        "received",
        "reused",
        "status",
        "transport",
        "write_paused",
    )

    def __init__(
        self, pool: ConnectionPool, origin: Origin, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.pool = pool
        self.origin = origin
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._drain: asyncio.Future[bool] | None = None
        self._paused = False
        self.closed = False
        self.broken = False  # stray or unparsable bytes: the framing can't be trusted
        self.lost: BaseException | None = None
        self.counted = False
        self.idle = False
        self.idle_since = 0.0
        self.reused = False
        self.write_paused = False
        self._reset()

    def _reset(self) -> None:
        self.received = 0
        self.head_only = False
        self.status = 0
        self.reason = b""
        self.http_version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.informational = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.keep_alive = True
        self.error: httpx.TransportError | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.complete:
            self.broken = True  # bytes nobody asked for
            if self.idle:
                self.pool.discard(self)
            return
        self.received += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("unexpected protocol switch in the response"))
        except httptools.HttpParserError as exc:
            if self.complete:
                self.broken = True
            else:
                self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"), exc)
        if not self.headers_done and self.received > MAX_HEAD_BYTES and self.error is None:
            self._fail(httpx.RemoteProtocolError("response head too large"))
        if self._waiter is not None:
            wake(self._waiter, True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        if self._parser is not None and not self.complete and self.headers_done:
            if self.error is None and not self._framed():
                self.complete = True  # a body delimited by the end of the connection
            self.keep_alive = False
        if self._waiter is not None:
            wake(self._waiter, True)
        if self._drain is not None:
            wake(self._drain, True)
        if self.idle:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None:
            wake(self._drain, True)

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.broken = True

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.informational = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self.status = status
        version = parser.get_http_version()
        if version != "1.1":
            self.http_version = b"HTTP/" + version.encode("ascii")
        self.headers_done = True
        if self.head_only:
            self.complete = True
            self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            self.reason = b""
            self.headers = []
            return
        if self.head_only:
            return
        self.complete = True
        parser = self._parser
        assert parser is not None
        self.keep_alive = parser.should_keep_alive()

    # -- used by the transport and the pool -------------------------------------------

    def _fail(self, error: httpx.TransportError, cause: BaseException | None = None) -> None:
        if self.error is None:
            error.__cause__ = cause
            self.error = error
        self.broken = True

    def _framed(self) -> bool:
        """Whether the response announced its length (so the end of the connection is an error)."""
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                return True
            if lowered == b"transfer-encoding" and value.lower().rstrip().endswith(b"chunked"):
                return True
        return False

    def usable(self, now: float, expiry: float) -> bool:
        return (
            not self.closed
            and not self.broken
            and self.keep_alive
            and now - self.idle_since <= expiry
        )

    def start(self, head_only: bool) -> None:
        """Make ready for a new response; `StaleConnection` if a reused one is gone."""
        if self.closed or self.broken:
            if self.reused:
                raise StaleConnection
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        self._reset()
        self.head_only = head_only
        self._parser = httptools.HttpResponseParser(self)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return  # the failure shows when the answer is awaited
        transport.write(data)

    async def drain(self, limit: float | None) -> None:
        while self.write_paused and not self.closed:
            future: asyncio.Future[bool] = self._loop.create_future()
            self._drain = future
            handle = None if limit is None else self._loop.call_later(limit, wake, future, False)
            try:
                if not await future:
                    raise httpx.WriteTimeout("timed out sending the request")
            finally:
                self._drain = None
                if handle is not None:
                    handle.cancel()
        if self.closed and self.lost is not None and not self.headers_done:
            raise httpx.WriteError(str(self.lost) or "connection lost") from self.lost

    async def wait(self, limit: float | None) -> bool:
        """Until something arrives or the connection ends; False when `limit` s ran out."""
        future: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = future
        if limit is None:
            try:
                return await future
            finally:
                self._waiter = None
        handle = self._loop.call_later(limit, wake, future, False)
        try:
            return await future
        finally:
            self._waiter = None
            handle.cancel()

    def failure(self) -> httpx.TransportError | StaleConnection | None:
        """Why no more of the response can come, or None if it may still come."""
        if self.error is not None:
            return self.error
        if not self.closed:
            return None
        if not self.headers_done:
            if self.received == 0 and self.reused:
                return StaleConnection()
            if self.lost is not None:
                error: httpx.TransportError = httpx.ReadError(str(self.lost) or "connection lost")
                error.__cause__ = self.lost
                return error
            return httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if self.lost is not None:
            error = httpx.ReadError(str(self.lost) or "connection lost")
            error.__cause__ = self.lost
            return error
        return httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    def finished(self) -> None:
        """The response is done with: forget the parser so stray bytes are noticed, drop
        what was not read, and read the socket again so a close by the server is seen."""
        self._parser = None
        self.reused = True
        if self.chunks:
            self.take()

    def close(self, *, graceful: bool) -> None:
        transport = self.transport
        self.closed = True
        self.keep_alive = False
        if transport is not None and not transport.is_closing():
            if graceful:
                transport.close()
            else:
                transport.abort()
