"""The SSRF guard as the client's resolver, against a real loopback sink.

A stub base resolver stands in for DNS (no query leaves the machine): it answers a public
address first and 127.0.0.1 after, the DNS-rebinding pattern. Nothing may reach the sink
unless its address is inside `allowed_networks`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import (
    AddressPolicy,
    ClientSettings,
    DeliveryClient,
    GuardedResolver,
    UnsafeTargetError,
    check_target,
    check_url,
    send,
)

Serve = Callable[[Any], contextlib.AbstractAsyncContextManager[str]]
BODY = b'{"id":"evt_1"}'
HEADERS = {"Content-Type": "application/json"}
PUBLIC = "93.184.215.14"


class StubResolver(AbstractResolver):
    """Answers each lookup with the next address of `answers` (the last one repeats)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0, flags=0)]

    async def close(self) -> None:
        return None

    async def getaddrinfo(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """The same answers, shaped for `check_url`'s resolver parameter."""
        [result] = await self.resolve(host, port)
        return [(result["family"], socket.SOCK_STREAM, 6, "", (result["host"], port))]


@pytest.fixture
def received() -> list[str]:
    return []


@pytest.fixture
async def sink(serve_app: Serve, received: list[str]) -> AsyncIterator[int]:
    async def hook(request: Request) -> Response:
        received.append(request.url.path)
        return Response("ok")

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve_app(app) as base:
        yield int(base.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def delivery_client(
    policy: AddressPolicy, base: AbstractResolver | None = None
) -> AsyncIterator[DeliveryClient]:
    client = DeliveryClient(ClientSettings(policy=policy), resolver=base)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_name_that_rebinds_to_loopback_after_the_check_reaches_nothing(
    sink: int, received: list[str]
) -> None:
    stub = StubResolver(PUBLIC, "127.0.0.1")
    url = f"http://crm.example.test:{sink}/hook"
    # The check when the target is created sees the public answer and passes ...
    await check_url(url, allow_private=False, resolver=stub.getaddrinfo)
    # ... and the lookup the connection makes gets 127.0.0.1: refused, nothing sent.
    async with delivery_client(AddressPolicy(), stub) as client:
        first = await send(client, url, BODY, HEADERS, timeout=5)
        second = await send(client, url, BODY, HEADERS, timeout=5)
    for attempt in (first, second):
        assert attempt.status_code is None
        assert attempt.error is not None
        assert "127.0.0.1" in attempt.error
        assert "loopback" in attempt.error
        assert attempt.request_method is None  # nothing was sent, so no request is shown
    assert received == []


async def test_the_resolver_hands_on_only_the_checked_addresses() -> None:
    class Mixed(StubResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            return [
                ResolveResult(hostname=host, host=a, port=port, family=f, proto=0, flags=0)
                for a, f in (
                    ("127.0.0.1", socket.AF_INET),
                    (PUBLIC, socket.AF_INET),
                    ("::ffff:10.0.0.1", socket.AF_INET6),
                    ("169.254.169.254", socket.AF_INET),
                )
            ]

    guarded = GuardedResolver(AddressPolicy(), Mixed("unused"))
    kept = await guarded.resolve("crm.example.test", 443)
    assert [r["host"] for r in kept] == [PUBLIC]


@pytest.mark.parametrize(
    "host",
    ["[::ffff:127.0.0.1]", "127.1", "2130706433", "0x7f000001", "127.0.0.1", "[::1]"],
)
async def test_loopback_spellings_stay_refused(host: str, sink: int, received: list[str]) -> None:
    url = f"http://{host}:{sink}/hook"
    async with delivery_client(AddressPolicy()) as client:
        attempt = await send(client, url, BODY, HEADERS, timeout=5)
    assert attempt.status_code is None
    assert attempt.error is not None
    # yarl (aiohttp's URL parser) rejects the legacy spellings outright; either way no
    # request is made. The dispatcher's own check names them loopback (next test).
    assert "loopback" in attempt.error or "not a canonical IPv4" in attempt.error, attempt.error
    assert received == []
    with pytest.raises(UnsafeTargetError, match="loopback"):
        check_target(url, AddressPolicy())


async def test_the_dispatcher_check_refuses_legacy_ipv4_literals() -> None:
    for host in ("127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]"):
        with pytest.raises(UnsafeTargetError, match="loopback"):
            check_target(f"http://{host}:8080/hook", AddressPolicy())


async def test_a_sink_inside_allowed_networks_is_delivered_to(
    sink: int, received: list[str]
) -> None:
    policy = AddressPolicy.build(False, ["127.0.0.0/8"])
    stub = StubResolver("127.0.0.1")
    async with delivery_client(policy, stub) as client:
        by_name = await send(
            client, f"http://crm.internal.test:{sink}/hook", BODY, HEADERS, timeout=5
        )
        by_address = await send(client, f"http://127.0.0.1:{sink}/hook", BODY, HEADERS, timeout=5)
    assert by_name.ok, by_name.error
    assert by_address.ok, by_address.error
    assert received == ["/hook", "/hook"]
    # Outside the allowed networks the guard still refuses.
    async with delivery_client(AddressPolicy.build(False, ["10.1.2.0/24"]), stub) as client:
        refused = await send(
            client, f"http://crm.internal.test:{sink}/hook", BODY, HEADERS, timeout=5
        )
    assert refused.status_code is None
    assert received == ["/hook", "/hook"]


async def test_one_lookup_serves_repeated_deliveries(sink: int, received: list[str]) -> None:
    stub = StubResolver("127.0.0.1")
    async with delivery_client(AddressPolicy.build(False, ["127.0.0.1/32"]), stub) as client:
        for _ in range(3):
            assert (await send(client, f"http://a.test:{sink}/hook", BODY, HEADERS, timeout=5)).ok
    assert len(received) == 3
    assert stub.lookups == ["a.test"]
