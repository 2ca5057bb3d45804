"""A lean HTTP/1.1 transport for httpx: asyncio protocols, the httptools parser, keep-alive.

httpx's default transport (httpcore on anyio, h11 in pure Python) costs several hundred µs of
CPU per request, which caps delivery throughput. `FastTransport` sits behind the same seam
(`httpx.AsyncBaseTransport`), so the client API, the redirects policy and the exception
types the sender maps stay httpx's. Errors are translated here, in one place: a connect
failure is `httpx.ConnectError` with the `OSError` as its cause (so errno-based messages
survive), a broken or malformed answer is `httpx.RemoteProtocolError` or `httpx.ReadError`,
and each phase of the request's `timeout` extension has its httpx timeout.

One connection carries one request at a time (no pipelining). A connection goes back to the
pool only when its whole response has arrived, keep-alive was not refused, and the server has
not closed it; anything else closes it. An idle connection the server closes is dropped as
soon as the event loop sees the close. For the race where the close is still in flight when
the connection is reused, a request whose reused connection ends before any byte of an
answer is sent once more on a new connection (bodies in memory only; a streamed body cannot
be replayed). httpcore guards the same race by checking an idle socket for readability
before reuse; the resend covers it after the fact, so in the rare case of a server that
processed the request and closed without a word the receiver sees it twice (webhook
receivers dedupe on `webhook-id`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator

import httpx

from actions.connection import Connection, StaleConnection
from actions.pool import ConnectionPool, Origin, PoolStats

_WRITE_IN_ONE = 64 * 1024  # bodies up to this size go out in the same write as the head
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _BodyStream(httpx.AsyncByteStream):
    """The response body as it arrives; frees the connection when done or closed."""

    __slots__ = ("_conn", "_pool", "_read_timeout")

    def __init__(self, pool: ConnectionPool, conn: Connection, read_timeout: float | None) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._read_timeout = read_timeout

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            while True:
                if conn.chunks:
                    return conn.take()
                if conn.complete:
                    break
                failure = conn.failure()
                if failure is not None:
                    raise failure
                if not await conn.wait(self._read_timeout):
                    raise httpx.ReadTimeout("timed out reading the response body")
        except BaseException:
            self._conn = None
            self._pool.discard(conn)
            raise
        self._conn = None
        self._pool.release(conn)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        # Unread bytes on the wire would be taken for the next answer: only a response that
        # has fully arrived leaves its connection reusable.
        if conn.complete:
            self._pool.release(conn)
        else:
            self._pool.discard(conn)


class _BufferedStream(httpx.AsyncByteStream):
    """A body that had fully arrived with the headers (its connection is already free)."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        body = self._body
        if not body:
            raise StopAsyncIteration
        self._body = b""
        return body


def _encode_head(request: httpx.Request) -> tuple[bytes, bytes | None, bool]:
    """The request line and headers; the body if it is in memory; whether to chunk it."""
    url = request.url
    parts = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    has_host = has_length = chunked = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"host":
            if has_host:
                raise httpx.LocalProtocolError("more than one Host header")
            has_host = True
        elif lowered == b"content-length":
            if has_length:
                raise httpx.LocalProtocolError("more than one Content-Length header")
            has_length = True
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        parts += (name, b": ", value, b"\r\n")
    lines = len(parts) // 4
    if not has_host:
        parts += (b"Host: ", url.netloc, b"\r\n")
        lines += 1
    try:
        body: bytes | None = request.content
    except httpx.RequestNotRead:
        body = None
    if body and not has_length and not chunked:
        parts += (b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n")
        lines += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    # A CR, LF or NUL inside a header or the target would split the request (injection).
    if head.count(b"\n") != lines + 1 or head.count(b"\r") != lines + 1 or b"\0" in head:
        raise httpx.LocalProtocolError("illegal character in the request line or headers")
    return head, body, chunked


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class FastTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio with keep-alive, for `httpx.AsyncClient(transport=...)`.

    `max_connections` caps open connections in all, `max_per_host` per (scheme, host, port);
    a request that finds both busy waits its turn (FIFO) for up to the pool timeout. Idle
    connections are closed after `keepalive_expiry` seconds. For https the certificate is
    verified against the system store unless `ssl_context` is given or `verify` is False.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_per_host: int = 20,
        keepalive_expiry: float = 5.0,
        verify: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1 or max_per_host < 1:
            raise ValueError("max_connections and max_per_host must be at least 1")
        self._pool = ConnectionPool(max_connections, max_per_host, keepalive_expiry)
        self._verify = verify
        self._ssl_context = ssl_context

    def stats(self) -> PoolStats:
        return self._pool.stats()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        port = _DEFAULT_PORTS.get(scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'."
            )
        if not url.raw_host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.")
        origin = (scheme, url.raw_host.decode("ascii"), url.port or port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        head, body, chunked = _encode_head(request)
        pool = self._pool
        head_only = request.method == "HEAD"
        retried = False
        while True:
            conn = await self._connection(origin, timeouts, fresh=retried)
            sent = False
            try:
                conn.start(head_only)
                sent = True
                if body is not None:
                    await self._send_bytes(conn, head, body, chunked, timeouts.get("write"))
                else:
                    await self._send_stream(conn, head, request.stream, chunked, timeouts)
                return await self._receive_head(conn, timeouts.get("read"))
            except StaleConnection:
                pool.discard(conn)
                if retried or (sent and body is None):  # a streamed body can't be sent again
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response."
                    ) from None
                retried = True
            except BaseException:
                pool.discard(conn)
                raise

    async def aclose(self) -> None:
        self._pool.close_all()

    async def _connection(
        self, origin: Origin, timeouts: dict[str, float | None], *, fresh: bool
    ) -> Connection:
        grant = await self._pool.acquire(origin, timeouts.get("pool"), fresh)
        if isinstance(grant, Connection):
            return grant
        try:
            conn = await self._open(origin, timeouts.get("connect"))
        except BaseException:
            self._pool.free_slot(origin)
            raise
        self._pool.adopt(conn)
        return conn

    async def _open(self, origin: Origin, limit: float | None) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        conn = Connection(self._pool, origin, loop)
        context = self._context() if scheme == "https" else None
        try:
            async with asyncio.timeout(limit):
                if _is_ip(host):
                    addresses = [host]
                else:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
                error: OSError | None = None
                for address in addresses:
                    try:
                        await loop.create_connection(
                            lambda: conn,
                            address,
                            port,
                            ssl=context,
                            server_hostname=host if context is not None else None,
                        )
                    except ssl.SSLError:
                        raise
                    except OSError as exc:
                        if isinstance(exc, TimeoutError):
                            raise
                        error = exc
                        continue
                    return conn
                assert error is not None
                raise error
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = ssl.create_default_context()
            if not self._verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    @staticmethod
    async def _send_bytes(
        conn: Connection, head: bytes, body: bytes, chunked: bool, limit: float | None
    ) -> None:
        if chunked:
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        if len(body) <= _WRITE_IN_ONE:
            conn.write(head + body)
        else:
            conn.write(head)
            conn.write(body)
        if conn.write_paused:
            await conn.drain(limit)

    @staticmethod
    async def _send_stream(
        conn: Connection,
        head: bytes,
        stream: httpx.AsyncByteStream | httpx.SyncByteStream,
        chunked: bool,
        timeouts: dict[str, float | None],
    ) -> None:
        conn.write(head)
        if not isinstance(stream, AsyncIterable):
            raise RuntimeError("an async transport needs an async request stream")
        async for chunk in stream:
            if not chunk:
                continue
            conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if conn.write_paused:
                await conn.drain(timeouts.get("write"))
        if chunked:
            conn.write(b"0\r\n\r\n")
        if conn.write_paused:
            await conn.drain(timeouts.get("write"))

    async def _receive_head(self, conn: Connection, limit: float | None) -> httpx.Response:
        while not conn.headers_done:
            failure = conn.failure()
            if failure is not None:
                raise failure
            if not await conn.wait(limit):
                raise httpx.ReadTimeout("timed out waiting for the response")
        if conn.error is not None:
            raise conn.error
        stream: httpx.AsyncByteStream
        if conn.complete:
            body = conn.take() if conn.chunks else b""
            stream = _BufferedStream(body)
            self._pool.release(conn)
        else:
            stream = _BodyStream(self._pool, conn, limit)
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=stream,
            extensions={"http_version": conn.http_version, "reason_phrase": conn.reason.strip()},
        )
