"""`gateway.limits.resp.RespClient`, the rate limiter's Redis connection: replies matched in order
under pipelining, redis-py's error types, AUTH and SELECT from the URL, and recovery after
a timeout or a dropped connection (against real Redis and a scripted loopback server)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from gateway.limits.resp import RespClient, pack


def test_pack_writes_bulk_strings() -> None:
    assert pack(("SET", "k", 12, b"\x00v", 1.5)) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\x00v\r\n$3\r\n1.5\r\n"
    )


@pytest.mark.redis
async def test_pipelined_calls_get_their_own_replies(redis_url: dict[str, Any]) -> None:
    client = RespClient(redis_url["url"])
    key = redis_url["prefix"] + "counter"
    try:
        replies = await asyncio.gather(*(client.call("INCR", key) for _ in range(200)))
        assert replies == list(range(1, 201))
        assert await client.call("GET", key) == b"200"
        assert await client.call("GET", redis_url["prefix"] + "missing") is None
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_the_url_database_is_selected(redis_url: dict[str, Any]) -> None:
    client = RespClient(redis_url["url"])
    inspect = aioredis.Redis.from_url(redis_url["url"])  # the same database, by redis-py
    key = redis_url["prefix"] + "db"
    try:
        await client.call("SET", key, "here")
        assert await inspect.get(key) == b"here"
    finally:
        await client.aclose()
        await inspect.aclose()


@pytest.mark.redis
async def test_error_replies_raise_redis_py_types(redis_url: dict[str, Any]) -> None:
    client = RespClient(redis_url["url"])
    try:
        with pytest.raises(NoScriptError):
            await client.evalsha("0" * 40, 0)
        with pytest.raises(ResponseError, match="unknown command"):
            await client.call("NO-SUCH-COMMAND")
        sha = await client.script_load("return tonumber(ARGV[1]) + 1")
        assert await client.evalsha(sha, 0, 41) == 42  # the connection is still in step
    finally:
        await client.aclose()


async def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        client = RespClient(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(ConnectionError):
            await client.call("PING")


class FakeRedis:
    """A scripted RESP server: PING answers PONG, HANG stops answering on that connection
    (a hung server), DROP closes it; AUTH and SELECT answer OK. Records every command."""

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        hung = False
        try:
            while True:
                header = await reader.readline()
                if not header:
                    return
                command = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    command.append((await reader.readexactly(size + 2))[:-2])
                self.commands.append(command)
                name = command[0].upper()
                if name == b"HANG":
                    hung = True
                if hung:
                    continue
                if name == b"DROP":
                    writer.close()
                    return
                writer.write(b"+PONG\r\n" if name == b"PING" else b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    await server.start()
    yield server
    await server.close()


async def test_auth_and_select_come_from_the_url(fake: FakeRedis) -> None:
    client = RespClient(f"redis://ops:s3cret@127.0.0.1:{fake.port}/3")
    try:
        assert await client.call("PING") == b"PONG"
        assert fake.commands == [[b"AUTH", b"ops", b"s3cret"], [b"SELECT", b"3"], [b"PING"]]
    finally:
        await client.aclose()


async def test_a_timeout_drops_the_connection_and_the_next_call_reconnects(
    fake: FakeRedis,
) -> None:
    client = RespClient(f"redis://127.0.0.1:{fake.port}/0", timeout=0.2)
    try:
        hung = asyncio.ensure_future(client.call("HANG"))
        queued = asyncio.ensure_future(client.call("PING"))  # behind the hung one
        with pytest.raises(TimeoutError):
            await hung
        # Its reply could no longer be matched, so it fails with the connection.
        with pytest.raises((ConnectionError, TimeoutError)):
            await queued
        assert await client.call("PING") == b"PONG"
        assert fake.connections == 2
    finally:
        await client.aclose()


async def test_a_dropped_connection_fails_what_waits_and_then_recovers(fake: FakeRedis) -> None:
    client = RespClient(f"redis://127.0.0.1:{fake.port}/0", timeout=2.0)
    try:
        assert await client.call("PING") == b"PONG"
        with pytest.raises(ConnectionError):
            await client.call("DROP")
        assert await client.call("PING") == b"PONG"
        assert fake.connections == 2
    finally:
        await client.aclose()
