"""The HTTP/1.1 protocol uvicorn runs for hookgate: httptools with a bound on request headers,
and upgrade requests served as the ordinary requests they are.

uvicorn's httptools protocol buffers a header of any size (a 64 MB `User-Agent` grew the
server by 63 MB) and, for any request carrying `Connection: Upgrade` (`Upgrade: h2c`, or
websocket headers on a POST), lets the parser skip the body: the h2c event arrived empty and
the websocket POST was never answered. hookgate speaks neither h2c nor websockets, so an
upgrade request is handed, with its head as parsed, to uvicorn's h11 protocol, which reads
the body and continues the connection as HTTP/1.1 after our non-101 answer (RFC 9110
§7.8: a server may ignore an upgrade). Everything else stays on httptools, the fast parser.

The header bound arrives as uvicorn's `h11_max_incomplete_event_size` (the most bytes of an
unfinished request head a connection buffers; h11 enforces it natively), set by
`gateway.http.serving` to `ingest.max_header_bytes + REQUEST_LINE_BYTES`, so one setting bounds
both protocols and the multi-worker path, which rebuilds the config in every worker.
Measured cost on the hot path: one generator sum over the parsed headers per request
(513 ns for 8 typical headers, `python -m timeit`, best of 5) and two attribute reads per
`data_received`. What it beat: a 64 MB header grew the server by 63 MB before; now 8, 32
and 64 MB headers each get 431 and the server's RSS moved by 0.7 MB, 0 and 0 (VmRSS of a
`hookgate serve` child, 55.2 MB before).

Each response leaves in one write (`OneWrite`): uvicorn writes the head and the body of a
response separately, two syscalls and two TCP segments for every 202. The ingest endpoint,
whose answers are small and whole, skips uvicorn's `send` altogether through
`scope["hookgate.respond"]` (`respond`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import chain
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

RESPOND = "hookgate.respond"
"""The scope key of `respond` for the request's cycle (absent under other servers)."""
Respond = Callable[[int, list[tuple[bytes, bytes]], bytes], Awaitable[None]]

REQUEST_LINE_BYTES = 8192  # allowance for the request line within the buffered-head bound
LINGER_SECONDS = 2.0  # read (and drop) what a refused client still sends, so it sees the 431


def max_header_bytes(config: Any) -> int:
    """The header bound `gateway.http.serving` encoded into the uvicorn config."""
    head: int | None = config.h11_max_incomplete_event_size
    if head is None:  # a plain uvicorn config: h11's own default
        return 16 * 1024
    return max(1, head - REQUEST_LINE_BYTES)


def headers_too_large(limit: int) -> bytes:
    """The complete 431 answer, written straight to the transport."""
    body = orjson.dumps({"error": "headers_too_large", "limit": limit})
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (len(body), body)
    )


class PlainH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, for connections whose request asked for an upgrade: no
    protocol switch is ever offered, and no "Unsupported upgrade request" warning logged."""

    def _should_upgrade(self) -> bool:
        return False


class OneWrite:
    """What a request cycle writes to: a response head waits for the first write after it
    (its body, in the same step of the event loop) and both leave in one `write`, one TCP
    segment, instead of two. A head with nothing after it in that step (a stream whose
    first chunk comes later) leaves at the end of the step, so nothing is delayed past it.
    Anything else a cycle asks of the transport goes straight to it, after the head.

    What it beat: the PostgreSQL ingest bench (`/tmp` script over `bench.procs`, one 10 s
    wrk round per run, two writes and one write alternated three times, 2-core AMD EPYC,
    2026-12-04) went from 7 832, 4 588 and 6 806 req/s to 8 895, 5 915 and 7 797, and the
    gateway's CPU per request from 111, 181 and 124 us to 98, 142 and 113 (/proc); the cost
    is one `call_soon` per response."""

    __slots__ = ("head", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self.head
        if head is not None:
            self.head = None
            self.transport.write(head + data)
        elif data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self.head = data
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        head = self.head
        if head is not None:
            self.head = None
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self.transport, name)


async def respond(
    cycle: RequestResponseCycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """A whole response (`status`, `headers` without content-length, `body`) in one write:
    what uvicorn's `send` does for a start message and a final body, without its per-header
    checks (two regular expressions, a lower-casing and a comparison chain per header) and
    the two message dicts. The caller's header names and values are its own constants and
    numbers, never request data, so they hold no CR or LF; names are lower case.

    What it beat: the ingest endpoint's two `send` calls (7 % of the gateway's py-spy samples
    in the PostgreSQL ingest bench), 8.10 us per response against 2.76 us here
    (`bench/respond_micro.py`, median of 7, 2-core AMD EPYC, 2026-12-04): about 3 % of the
    gateway's CPU per request, too little for the wrk bench to show through its noise."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    if cycle.response_started:
        raise RuntimeError("the response was already started")
    cycle.response_started = cycle.response_complete = True
    cycle.waiting_for_100_continue = False
    content = [STATUS_LINE[status]]
    for name, value in chain(cycle.default_headers, headers):
        content += (name, b": ", value, b"\r\n")
    content.append(b"content-length: %d\r\n" % len(body))
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content.append(b"\r\n")
    if cycle.scope["method"] != "HEAD":
        content.append(body)
    cycle.transport.write(b"".join(content))
    cycle.message_event.set()  # a receive() still waiting sees the end of the request
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()


class HookgateHttpProtocol(HttpToolsProtocol):
    one_write: OneWrite  # what each request cycle of the connection writes to

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes(self.config)
        self.max_head_bytes = self.max_header_bytes + REQUEST_LINE_BYTES
        self.head_bytes = 0  # bytes received while the current request head is unfinished
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.one_write = OneWrite(transport, self.loop)

    def data_received(self, data: bytes) -> None:
        if self.refused:  # lingering after a 431: drop what the client still sends
            return
        self.one_write.flush()  # what this protocol writes itself (a 400) comes after
        self._unset_keepalive_if_required()
        scope = self.scope
        head_was_open = scope is not None and "method" not in scope
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if not self.refused:
                self._hand_over(data[exc.args[0] :])
            return
        except httptools.HttpParserError:
            if self.refused:  # on_headers_complete stopped the parser after answering 431
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        scope = self.scope
        if scope is not None and "method" not in scope:
            # The head is still unfinished: httptools holds its partial header in memory, so
            # bound it here rather than after the parser has collected all of it. A chunk
            # that opened the head counts from the next one (asyncio reads ≤ 256 KiB).
            self.head_bytes = self.head_bytes + len(data) if head_was_open else 0
            if self.head_bytes > self.max_head_bytes:
                self._refuse()

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        if sum(len(name) + len(value) for name, value in self.headers) > self.max_header_bytes:
            self._refuse()
            raise HeadersTooLarge  # stops the parser: no body is read
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # a new cycle, not an upgrade
            cycle.transport = self.one_write  # type: ignore[assignment]
            cycle.scope[RESPOND] = partial(respond, cycle)  # type: ignore[literal-required]

    def _should_upgrade(self) -> bool:
        """Every upgrade request leaves httptools (see `_hand_over`); the base class asks
        only when the parser has seen one."""
        return True

    def _refuse(self) -> None:
        self.refused = True
        self.transport.write(headers_too_large(self.max_header_bytes))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _hand_over(self, rest: bytes) -> None:
        """Continue this connection on h11, replaying the request head as parsed (as uvicorn
        itself does when it hands a websocket upgrade over) and the bytes after it."""
        method = self.scope["method"].encode()
        version = self.parser.get_http_version().encode()
        head = [method, b" ", self.url, b" HTTP/", version, b"\r\n"]
        for name, value in self.headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self.flow.resume_reading()
        self.connections.discard(self)
        protocol = PlainH11Protocol(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.data_received(b"".join(head) + rest)


class HeadersTooLarge(Exception):
    """Raised inside a parser callback to stop httptools once the 431 is written."""
