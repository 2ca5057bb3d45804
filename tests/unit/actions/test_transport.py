"""FastTransport against real loopback servers: uvicorn for the ordinary cases, raw asyncio
servers for the protocol's edges (framing, closes, resets, stale connections).

Server-side connection counts are what the server saw (client ports, accepted sockets), so a
pool that quietly opens a connection per request fails here even if every answer is right.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from actions.connection import READ_HIGH_WATER
from actions.pool import PoolStats
from actions.sender import send
from actions.transport import FastTransport

BIG = 5 * 1024 * 1024
Serve = Callable[..., contextlib.AbstractAsyncContextManager[str]]


async def eventually(predicate: Callable[[], Any], within: float = 10.0) -> None:
    """Poll `predicate` in this event loop until it is truthy; fail after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def fast_client(**options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FastTransport]]:
    transport = FastTransport(**options)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        yield client, transport


# -- a uvicorn sink -------------------------------------------------------------------------


class Sink:
    """Raw ASGI app that records which connection (client port) carried each request."""

    def __init__(self) -> None:
        self.base = ""
        self.ports: list[int] = []
        self.order: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = asyncio.Event()
        self.proceed = asyncio.Event()

    @property
    def connections(self) -> int:
        return len(set(self.ports))

    async def __call__(self, scope: dict[str, Any], receive: Any, send_: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.ports.append(scope["client"][1])
        path = scope["path"]
        headers: list[tuple[bytes, bytes]] = []
        status = 200
        if path == "/echo":
            answer = body
        elif path == "/host":
            answer = dict(scope["headers"])[b"host"]
        elif path == "/gate":
            self.order.append(scope["query_string"].decode())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            await self.gate.wait()
            self.in_flight -= 1
            answer = scope["query_string"]
        elif path == "/big":
            answer = b"x" * BIG
        elif path == "/redirect":
            status, answer = 302, b""
            headers.append((b"location", b"http://169.254.169.254/latest"))
        elif path == "/chunks":
            start = {"type": "http.response.start", "status": 200, "headers": []}
            await send_(start)  # no content-length: uvicorn sends chunked
            await send_({"type": "http.response.body", "body": b"first;", "more_body": True})
            await self.proceed.wait()
            await send_({"type": "http.response.body", "body": b"second", "more_body": True})
            await send_({"type": "http.response.body", "body": b""})
            return
        else:
            status, answer = 404, b"not found"
        headers.append((b"content-length", str(len(answer)).encode()))
        await send_({"type": "http.response.start", "status": status, "headers": headers})
        await send_({"type": "http.response.body", "body": answer})


@pytest.fixture
async def sink(serve_app: Serve) -> AsyncIterator[Sink]:
    app = Sink()
    async with serve_app(app) as base:
        app.base = base
        try:
            yield app
        finally:  # a failed test must not leave uvicorn waiting on a handler
            app.gate.set()
            app.proceed.set()


# -- raw servers for the protocol's edges ---------------------------------------------------


@dataclass
class RawServer:
    """What a raw server saw: requests as (connection number, head, body), closes by client."""

    port: int = 0
    connections: int = 0
    requests: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    client_closed: set[int] = field(default_factory=set)

    def on(self, number: int) -> list[bytes]:
        return [body for conn, _, body in self.requests if conn == number]


Handler = Callable[[RawServer, int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request off the wire, body as sent (chunked bodies keep their framing)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lowered = head.lower()
        if b"transfer-encoding: chunked" in lowered:
            return head, await reader.readuntil(b"0\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: *(\d+)", lowered)
        return head, await reader.readexactly(int(length[1]) if length else 0)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    state = RawServer()
    tasks: set[asyncio.Task[Any]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        state.connections += 1
        try:
            await handler(state, state.connections, reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def keep_alive_server(
    answer: Callable[[int, int, bytes], bytes | None],
) -> contextlib.AbstractAsyncContextManager[RawServer]:
    """Serves requests in a loop; `answer(connection, nth, body)` gives the raw bytes to
    write, or None to close the connection. EOF from the client is recorded."""

    async def handler(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nth = 0
        while True:
            request = await read_request(reader)
            if request is None:
                state.client_closed.add(number)
                return
            state.requests.append((number, *request))
            nth += 1
            reply = answer(number, nth, request[1])
            if reply is None:
                return
            writer.write(reply)
            await writer.drain()

    return raw_server(handler)


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head.encode(), body)


# -- keep-alive and the pool ------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(sink: Sink) -> None:
    async with fast_client() as (client, transport):
        for i in range(20):
            response = await client.post(f"{sink.base}/echo", content=b"n=%d" % i)
            assert (response.status_code, response.content) == (200, b"n=%d" % i)
        assert response.http_version == "HTTP/1.1"
        assert response.reason_phrase == "OK"
        assert transport.stats() == PoolStats(connections=1, idle=1, waiting=0)
    assert len(sink.ports) == 20
    assert sink.connections == 1


async def test_per_host_cap_holds_under_concurrency(sink: Sink) -> None:
    async with fast_client(max_per_host=2, max_connections=10) as (client, transport):
        calls = [
            asyncio.create_task(client.post(f"{sink.base}/gate?{i}", content=b"x"))
            for i in range(10)
        ]
        await eventually(lambda: sink.in_flight == 2 and transport.stats().waiting == 8)
        sink.gate.set()
        responses = await asyncio.gather(*calls)
    assert sorted(r.text for r in responses) == sorted(str(i) for i in range(10))
    assert sink.max_in_flight == 2
    assert sink.connections == 2


async def test_waiters_get_the_connection_first_come_first_served(sink: Sink) -> None:
    async with fast_client(max_connections=1) as (client, transport):
        calls = [asyncio.create_task(client.post(f"{sink.base}/gate?0"))]
        await eventually(lambda: sink.in_flight == 1)
        for i in range(1, 5):
            calls.append(asyncio.create_task(client.post(f"{sink.base}/gate?{i}")))
            await eventually(lambda i=i: transport.stats().waiting == i)
        sink.gate.set()
        await asyncio.gather(*calls)
        assert transport.stats() == PoolStats(connections=1, idle=1, waiting=0)
    assert sink.order == ["0", "1", "2", "3", "4"]
    assert sink.connections == 1


async def test_pool_timeout_and_the_pool_stays_usable(sink: Sink) -> None:
    async with fast_client(max_connections=1) as (client, transport):
        held = asyncio.create_task(client.post(f"{sink.base}/gate?held"))
        await eventually(lambda: sink.in_flight == 1)
        with pytest.raises(httpx.PoolTimeout):
            await client.post(f"{sink.base}/echo", timeout=httpx.Timeout(5, pool=0.1))
        assert transport.stats().waiting == 0
        sink.gate.set()
        assert (await held).text == "held"
        response = await client.post(f"{sink.base}/echo", content=b"after")
        assert response.content == b"after"
        assert transport.stats() == PoolStats(connections=1, idle=1, waiting=0)
    assert sink.connections == 1


async def test_total_cap_evicts_an_idle_connection_of_another_host(
    sink: Sink, serve_app: Serve
) -> None:
    other = Sink()
    # A long keep-alive expiry: only eviction, not the idle sweep, can free the one slot.
    pool = fast_client(max_connections=1, keepalive_expiry=60)
    async with serve_app(other) as other_base, pool as (client, t):
        assert (await client.post(f"{sink.base}/echo", content=b"a")).content == b"a"
        assert (await client.post(f"{other_base}/echo", content=b"b")).content == b"b"
        assert (await client.post(f"{sink.base}/echo", content=b"c")).content == b"c"
        assert t.stats() == PoolStats(connections=1, idle=1, waiting=0)
    assert sink.connections == 2  # its first connection was closed to make room
    assert other.connections == 1


async def test_idle_connections_close_after_keepalive_expiry() -> None:
    async with (
        keep_alive_server(lambda conn, nth, body: ok(b"hi")) as server,
        fast_client(keepalive_expiry=0.1) as (client, transport),
    ):
        assert (await client.get(f"http://127.0.0.1:{server.port}/")).content == b"hi"
        await eventually(lambda: server.client_closed == {1})
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
        assert (await client.get(f"http://127.0.0.1:{server.port}/")).content == b"hi"
    assert server.connections == 2


async def test_aclose_closes_every_connection() -> None:
    async def handler(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request = await read_request(reader)
        assert request is not None
        state.requests.append((number, *request))
        await eventually(lambda: len(state.requests) == 3)  # three at once: three connections
        writer.write(ok(b"done"))
        if await read_request(reader) is None:
            state.client_closed.add(number)

    async with raw_server(handler) as server:
        transport = FastTransport()
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            url = f"http://127.0.0.1:{server.port}/"
            responses = await asyncio.gather(*(client.get(url) for _ in range(3)))
            assert [r.content for r in responses] == [b"done"] * 3
            assert transport.stats() == PoolStats(connections=3, idle=3, waiting=0)
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
        await eventually(lambda: server.client_closed == {1, 2, 3})


# -- framing of requests and responses --------------------------------------------------------


async def test_request_on_the_wire_has_one_host_and_one_content_length() -> None:
    async with (
        keep_alive_server(lambda conn, nth, body: ok(b"")) as server,
        fast_client() as (client, _),
    ):
        url = f"http://127.0.0.1:{server.port}/p/a%20th?q=1&r=%2F"
        await client.post(url, content=b"abc", headers={"X-Token": "t"})
        await client.post(url, content=b"abc", headers={"Host": "example.test"})
        await client.post(url)
    heads = [head.decode() for _, head, _ in server.requests]
    for head in heads:
        assert head.startswith("POST /p/a%20th?q=1&r=%2F HTTP/1.1\r\n")
        assert len(re.findall(r"(?im)^host:", head)) == 1
        assert len(re.findall(r"(?im)^content-length:", head)) == 1
    assert f"Host: 127.0.0.1:{server.port}\r\n" in heads[0]
    assert "Content-Length: 3\r\n" in heads[0]
    assert "X-Token: t\r\n" in heads[0]
    assert "Host: example.test\r\n" in heads[1]
    assert "Content-Length: 0\r\n" in heads[2]
    assert [body for _, _, body in server.requests] == [b"abc", b"abc", b""]


async def test_streamed_request_body_is_sent_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield b"world"

    async with (
        keep_alive_server(lambda conn, nth, body: ok(b"got it")) as server,
        fast_client() as (client, _),
    ):
        response = await client.post(f"http://127.0.0.1:{server.port}/", content=parts())
    assert response.content == b"got it"
    [(_, head, body)] = server.requests
    assert b"Transfer-Encoding: chunked\r\n" in head
    assert b"content-length" not in head.lower()
    assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"


async def test_header_injection_is_refused_before_sending() -> None:
    async with (
        keep_alive_server(lambda conn, nth, body: ok(b"")) as server,
        fast_client() as (client, _),
    ):
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(f"http://127.0.0.1:{server.port}/", headers={"X-A": "a\r\nX-B: b"})
    assert server.requests == []


async def test_chunked_response_streams_as_it_arrives(sink: Sink) -> None:
    async with fast_client() as (client, transport):
        async with client.stream("GET", f"{sink.base}/chunks") as response:
            assert response.headers["transfer-encoding"] == "chunked"
            chunks = response.aiter_raw()
            async with asyncio.timeout(5):  # the second part is only sent after the first arrived
                assert await anext(chunks) == b"first;"
            sink.proceed.set()
            rest = b"".join([chunk async for chunk in chunks])
        assert rest == b"second"
        assert (await client.post(f"{sink.base}/echo", content=b"again")).content == b"again"
        assert transport.stats().connections == 1
    assert sink.connections == 1


async def test_body_delimited_by_close_is_read_to_the_end() -> None:
    async def handler(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await writer.drain()
        writer.write(b"second part")

    async with raw_server(handler) as server, fast_client() as (client, transport):
        for _ in range(2):
            response = await client.get(f"http://127.0.0.1:{server.port}/")
            assert response.content == b"first part, second part"
        assert transport.stats().connections == 0
    assert server.connections == 2


async def test_connection_close_is_honoured() -> None:
    # The server would happily read a second request on the same connection: only the
    # client's respect for "Connection: close" sends it elsewhere.
    async with (
        keep_alive_server(lambda conn, nth, body: ok(body, "Connection: close")) as server,
        fast_client() as (client, transport),
    ):
        for body in (b"one", b"two"):
            response = await client.post(f"http://127.0.0.1:{server.port}/", content=body)
            assert response.content == body
        assert transport.stats().connections == 0
    assert (server.connections, server.on(1), server.on(2)) == (2, [b"one"], [b"two"])


async def test_http_1_0_response_is_not_kept_alive() -> None:
    async with (
        keep_alive_server(
            lambda conn, nth, body: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ) as server,
        fast_client() as (client, _),
    ):
        for _ in range(2):
            response = await client.get(f"http://127.0.0.1:{server.port}/")
            assert (response.http_version, response.content) == ("HTTP/1.0", b"ok")
    assert server.connections == 2


async def test_informational_responses_are_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    reply += b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok"
    async with (
        keep_alive_server(lambda conn, nth, body: reply) as server,
        fast_client() as (client, _),
    ):
        for _ in range(2):
            response = await client.post(f"http://127.0.0.1:{server.port}/", content=b"x")
            assert (response.status_code, response.content) == (201, b"ok")
            assert response.headers["x-final"] == "yes"
            assert "link" not in response.headers
    assert server.connections == 1


async def test_head_response_has_no_body_and_keeps_the_connection() -> None:
    def answer(conn: int, nth: int, body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + (b"" if nth == 1 else b"hello")

    async with keep_alive_server(answer) as server, fast_client() as (client, _):
        head = await client.head(f"http://127.0.0.1:{server.port}/")
        assert (head.status_code, head.headers["content-length"], head.content) == (200, "5", b"")
        assert (await client.get(f"http://127.0.0.1:{server.port}/")).content == b"hello"
    assert server.connections == 1


async def test_redirect_is_returned_not_followed(sink: Sink) -> None:
    async with fast_client() as (client, _):
        response = await client.post(f"{sink.base}/redirect", content=b"x")
        assert response.status_code == 302
        assert response.headers["location"] == "http://169.254.169.254/latest"
        assert (await client.post(f"{sink.base}/echo", content=b"y")).content == b"y"
    assert len(sink.ports) == 2
    assert sink.connections == 1


# -- closes, resets and early exits ----------------------------------------------------------


async def test_server_closing_an_idle_connection_is_noticed() -> None:
    async def one_per_connection(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request = await read_request(reader)
        assert request is not None
        state.requests.append((number, *request))
        writer.write(ok(b"conn %d" % number))  # keep-alive framing, then the server hangs up
        await writer.drain()

    pool = fast_client(keepalive_expiry=60)  # nothing but the server's close ends it
    async with raw_server(one_per_connection) as server, pool as (client, transport):
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.get(url)).content == b"conn 1"
        await eventually(lambda: transport.stats().connections == 0)
        assert (await client.get(url)).content == b"conn 2"
        for n in range(3, 8):  # back to back: the close may or may not have been seen yet
            assert (await client.get(url)).content == b"conn %d" % n
    # A request that met an already closed connection was sent again on the next one.
    assert [conn for conn, _, _ in server.requests] == list(range(1, 8))
    assert server.connections == 7


async def test_stale_reused_connection_is_retried_once_on_a_new_one() -> None:
    # Connection 1 answers once, then reads the next request and hangs up without a word:
    # the race of a server closing a kept-alive connection just as it is reused.
    def answer(conn: int, nth: int, body: bytes) -> bytes | None:
        if conn == 1 and nth == 2:
            return None
        return ok(b"conn %d" % conn)

    async with keep_alive_server(answer) as server, fast_client() as (client, transport):
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.post(url, content=b"a")).content == b"conn 1"
        assert (await client.post(url, content=b"b")).content == b"conn 2"
        assert transport.stats().connections == 1
    assert (server.on(1), server.on(2)) == ([b"a", b"b"], [b"b"])


async def test_stale_connection_with_a_streamed_body_is_not_resent() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"once"

    async with (
        keep_alive_server(lambda conn, nth, body: None if nth == 2 else ok(b"ok")) as server,
        fast_client() as (client, transport),
    ):
        url = f"http://127.0.0.1:{server.port}/"
        await client.post(url, content=b"a")
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post(url, content=parts())
        assert transport.stats().connections == 0
    assert server.connections == 1


async def test_new_connection_closed_without_answer_is_not_retried() -> None:
    async with (
        keep_alive_server(lambda conn, nth, body: None) as server,
        fast_client() as (client, transport),
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post(f"http://127.0.0.1:{server.port}/", content=b"a")
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
    assert server.connections == 1


async def test_early_close_of_a_big_response_closes_its_connection(sink: Sink) -> None:
    async with fast_client() as (client, transport):
        async with client.stream("POST", f"{sink.base}/big") as response:
            first = await anext(response.aiter_raw())
            assert 0 < len(first) < BIG
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
        assert (await client.post(f"{sink.base}/echo", content=b"next")).content == b"next"
        attempt = await send(client, f"{sink.base}/big", b"{}", {}, timeout=10)
        assert (attempt.ok, attempt.response_excerpt) == (True, "x" * 1024)
        assert transport.stats().connections == 0
        assert (await client.post(f"{sink.base}/echo", content=b"last")).content == b"last"
        whole = await client.post(f"{sink.base}/big")
        assert whole.content == b"x" * BIG
    assert sink.connections == 3  # /big twice cut short, then one connection for the rest


async def test_unread_body_is_not_buffered_without_bound() -> None:
    size, piece = 32 * 1024 * 1024, b"y" * 65536
    written = 0

    async def handler(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal written
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        while written < size:
            writer.write(piece)
            await writer.drain()
            written += len(piece)

    async with raw_server(handler) as server, fast_client() as (client, transport):
        async with client.stream("GET", f"http://127.0.0.1:{server.port}/") as response:
            chunks = response.aiter_raw()
            received = len(await anext(chunks))
            # Proving that something does not happen needs a bounded wait: a client that
            # kept reading the socket would take in all 32 MiB well within it.
            await asyncio.sleep(0.5)
            assert written < size // 2
            received += sum([len(chunk) async for chunk in chunks])  # and reading resumes
        assert received == size
        assert transport.stats() == PoolStats(connections=1, idle=1, waiting=0)


@pytest.mark.parametrize("size", [200_000, 300_000, 600_000])
async def test_response_closed_unread_leaves_a_working_pool(size: int) -> None:
    # Whether all of it had arrived (connection reused) or not (closed), the next request
    # must work: a reused connection must not stay paused with stale bytes in its buffer.
    answer = ok(b"z" * size)
    async with (
        keep_alive_server(lambda conn, nth, body: answer) as server,
        fast_client() as (client, transport),
    ):
        url = f"http://127.0.0.1:{server.port}/"
        live = transport._pool.live
        for _ in range(3):
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                # Let it arrive unread until done or reading pauses (white-box: nothing
                # public tells).
                await eventually(
                    lambda: any(c.complete or c.buffered > READ_HIGH_WATER for c in live)
                )
            whole = await client.get(url, timeout=httpx.Timeout(2))
            assert whole.content == b"z" * size


async def test_truncated_body_is_a_protocol_error() -> None:
    async def handler(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    async with raw_server(handler) as server, fast_client() as (client, transport):
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await client.get(f"http://127.0.0.1:{server.port}/")
        assert transport.stats().connections == 0


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n",
    ],
)
async def test_malformed_response_is_a_protocol_error(reply: bytes) -> None:
    async with (
        keep_alive_server(lambda conn, nth, body: reply) as server,
        fast_client() as (client, transport),
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="malformed response"):
            await client.get(f"http://127.0.0.1:{server.port}/")
        assert transport.stats().connections == 0


async def test_reset_mid_response_is_a_read_error() -> None:
    async def handler(
        state: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # linger 0: the close is a RST

    async with raw_server(handler) as server, fast_client() as (client, _):
        with pytest.raises(httpx.ReadError) as caught:
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_refused_port_is_a_connect_error_with_its_errno(closed_port: int) -> None:
    async with fast_client() as (client, transport):
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{closed_port}/")
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__cause__.errno == errno.ECONNREFUSED
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
        attempt = await send(client, f"http://127.0.0.1:{closed_port}/", b"{}", {}, timeout=5)
        assert attempt.error == "connection refused"


async def test_host_names_are_resolved(sink: Sink) -> None:
    port = sink.base.rsplit(":", 1)[1]
    async with fast_client() as (client, _):
        response = await client.get(f"http://localhost:{port}/host")
    assert response.content == f"localhost:{port}".encode()


# -- timeouts and cancellation ---------------------------------------------------------------


async def test_read_timeout(silent_port: int) -> None:
    async with fast_client() as (client, transport):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{silent_port}/", timeout=httpx.Timeout(0.2))
        assert transport.stats().connections == 0


async def test_connect_timeout() -> None:
    # A listener whose accept queue is full drops new SYNs: the connect hangs, on loopback.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            async with fast_client() as (client, transport):
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get(
                        f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(5, connect=0.2)
                    )
                assert transport.stats().connections == 0
        finally:
            for filler in fillers:
                filler.close()


async def test_write_timeout(silent_port: int) -> None:
    # Nobody reads: kernel buffers fill and the rest of a 32 MiB body cannot be written.
    async with fast_client() as (client, transport):
        with pytest.raises(httpx.WriteTimeout):
            await client.post(
                f"http://127.0.0.1:{silent_port}/",
                content=b"x" * (32 * 1024 * 1024),
                timeout=httpx.Timeout(5, write=0.2),
            )
        assert transport.stats().connections == 0


async def test_cancelled_request_leaves_the_pool_consistent(sink: Sink, silent_port: int) -> None:
    async with fast_client(max_connections=1) as (client, transport):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.post(f"http://127.0.0.1:{silent_port}/", content=b"x")
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
        attempt = await send(client, f"http://127.0.0.1:{silent_port}/", b"{}", {}, timeout=0.2)
        assert attempt.error == "timed out after 0.2 s"
        assert transport.stats() == PoolStats(connections=0, idle=0, waiting=0)
        # The one slot is free again: a real request gets it.
        assert (await client.post(f"{sink.base}/echo", content=b"ok")).content == b"ok"
        # Cancelled while queued for the pool: the queue forgets it.
        held = asyncio.create_task(client.post(f"{sink.base}/gate?held"))
        await eventually(lambda: sink.in_flight == 1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.post(f"{sink.base}/echo")
        assert transport.stats() == PoolStats(connections=1, idle=0, waiting=0)
        sink.gate.set()
        assert (await held).text == "held"
        assert (await client.post(f"{sink.base}/echo", content=b"ok")).content == b"ok"
        assert transport.stats() == PoolStats(connections=1, idle=1, waiting=0)


async def test_cancelled_body_read_closes_the_connection(sink: Sink) -> None:
    async with fast_client() as (client, transport):
        async with client.stream("GET", f"{sink.base}/chunks") as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"first;"
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await anext(chunks)
            assert transport.stats().connections == 0
        sink.proceed.set()
        assert (await client.post(f"{sink.base}/echo", content=b"ok")).content == b"ok"
    assert sink.connections == 2


# -- TLS and IPv6 -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (neither `cryptography` nor
    `trustme` is a dependency, so the openssl command makes it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-days", "2", "-subj", "/CN=hookgate test", "-keyout", str(key)),
            *("-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_with_a_trusted_certificate(
    serve_app: Serve, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    app = Sink()
    trusting = ssl.create_default_context(cafile=str(cert))
    async with serve_app(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as base:
        port = base.rsplit(":", 1)[1]
        assert base.startswith("https://127.0.0.1:")
        async with fast_client(ssl_context=trusting) as (client, _):
            for name in ("127.0.0.1", "localhost", "localhost"):
                response = await client.post(f"https://{name}:{port}/echo", content=b"secret")
                assert response.content == b"secret"
        async with fast_client() as (client, _):  # the system store does not trust it
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"{base}/echo")
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
            attempt = await send(client, f"{base}/echo", b"{}", {}, timeout=5)
            assert attempt.error is not None
            assert attempt.error.startswith("TLS certificate not trusted")
        async with fast_client(verify=False) as (client, _):
            assert (await client.post(f"{base}/echo", content=b"x")).content == b"x"
    assert app.connections == 3  # one per origin (127.0.0.1, localhost), one unverified


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_literal_host(serve_app: Serve) -> None:
    app = Sink()
    async with serve_app(app, host="::1") as base, fast_client() as (client, _):
        assert base.startswith("http://[::1]:")
        response = await client.get(f"{base}/host")
        assert response.content == base.removeprefix("http://").encode()
        assert (await client.post(f"{base}/echo", content=b"v6")).content == b"v6"
    assert app.connections == 1
