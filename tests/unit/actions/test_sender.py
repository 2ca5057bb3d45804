"""The sender against real local servers: a Starlette sink under uvicorn, a listener that
never answers, a raw server that trickles, and a closed port. httpx is never mocked; every
case runs over the aiohttp client the dispatcher uses (`DeliveryClient`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from actions.client import ClientSettings, DeliveryClient
from actions.sender import parse_retry_after, send
from actions.signing import Signer, Verifier, generate_secret
from actions.ssrf import AddressPolicy

BODY = b'{"id": "evt_1", "type": "job_completed"}'
HEADERS = {"Content-Type": "application/json", "User-Agent": "hookgate/test"}
BIG = 5 * 1024 * 1024
Serve = Callable[[Any], contextlib.AbstractAsyncContextManager[str]]


def sink_app(received: list[tuple[str, dict[str, str], bytes]]) -> Starlette:
    async def record(request: Request) -> Response:
        received.append((request.url.path, dict(request.headers), await request.body()))
        return Response("thanks", status_code=200)

    async def created(request: Request) -> Response:
        return Response(status_code=201)

    async def fail(request: Request) -> Response:
        return Response("boom: database is down", status_code=500)

    async def redirect(request: Request) -> Response:
        return Response(status_code=302, headers={"Location": "http://169.254.169.254/latest"})

    async def big(request: Request) -> Response:
        return Response(b"x" * BIG, media_type="text/plain")

    async def busy(request: Request) -> Response:
        return Response("slow down", status_code=429, headers={"Retry-After": "7"})

    async def unavailable(request: Request) -> Response:
        when = formatdate(time.time() + 120, usegmt=True)
        return Response("maintenance", status_code=503, headers={"Retry-After": when})

    async def failing_with_retry_after(request: Request) -> Response:
        return Response(status_code=500, headers={"Retry-After": "7"})

    async def latin(request: Request) -> Response:
        return Response(b"caf\xe9 \xff ok", media_type="text/plain")

    async def trickle_body(request: Request) -> StreamingResponse:
        async def drip() -> AsyncIterator[bytes]:
            yield b"accepted; "
            while True:
                await asyncio.sleep(0.05)
                yield b"."

        return StreamingResponse(drip(), media_type="text/plain")

    return Starlette(
        routes=[
            Route("/hook", record, methods=["POST"]),
            Route("/created", created, methods=["POST"]),
            Route("/fail", fail, methods=["POST"]),
            Route("/redirect", redirect, methods=["POST"]),
            Route("/big", big, methods=["POST"]),
            Route("/busy", busy, methods=["POST"]),
            Route("/unavailable", unavailable, methods=["POST"]),
            Route("/fail-retry-after", failing_with_retry_after, methods=["POST"]),
            Route("/latin", latin, methods=["POST"]),
            Route("/trickle-body", trickle_body, methods=["POST"]),
        ]
    )


@pytest.fixture
async def client() -> AsyncIterator[DeliveryClient]:
    """The delivery client, loopback allowed (these servers all live on 127.0.0.1)."""
    http = DeliveryClient(ClientSettings(policy=AddressPolicy(allow_private=True)))
    try:
        yield http
    finally:
        await http.aclose()


@pytest.fixture
def received() -> list[tuple[str, dict[str, str], bytes]]:
    return []


@pytest.fixture
async def sink(serve_app: Serve, received: list[Any]) -> AsyncIterator[str]:
    async with serve_app(sink_app(received)) as base_url:
        yield base_url


async def test_2xx_is_success_and_the_receiver_gets_body_and_headers(
    client: DeliveryClient, sink: str, received: list[tuple[str, dict[str, str], bytes]]
) -> None:
    secret = generate_secret()
    headers = HEADERS | Signer(secret).headers("dlv_1", int(time.time()), BODY)
    before = time.time()
    attempt = await send(client, f"{sink}/hook", BODY, headers, timeout=5)
    assert attempt.ok
    assert attempt.status_code == 200
    assert attempt.error is None
    assert attempt.response_excerpt == "thanks"
    assert attempt.retry_after is None
    assert before <= attempt.at <= time.time()
    assert 0 < attempt.latency_ms < 5000
    [(path, got_headers, got_body)] = received
    assert path == "/hook"
    assert got_body == BODY
    assert got_headers["content-type"] == "application/json"
    assert got_headers["user-agent"] == "hookgate/test"
    Verifier(secret).verify(got_headers, got_body, now=time.time())


async def test_any_2xx_is_success(client: DeliveryClient, sink: str) -> None:
    attempt = await send(client, f"{sink}/created", BODY, HEADERS, timeout=5)
    assert (attempt.ok, attempt.status_code, attempt.error) == (True, 201, None)
    assert attempt.response_excerpt == ""


async def test_500_is_a_failure_with_the_receivers_words(client: DeliveryClient, sink: str) -> None:
    attempt = await send(client, f"{sink}/fail", BODY, HEADERS, timeout=5)
    assert not attempt.ok
    assert attempt.status_code == 500
    assert attempt.error == "HTTP 500"
    assert attempt.response_excerpt == "boom: database is down"
    assert attempt.retry_after is None


async def test_redirect_is_not_followed_and_counts_as_failure(
    client: DeliveryClient, sink: str
) -> None:
    # The Location points at the metadata address: following it would bypass the SSRF guard.
    attempt = await send(client, f"{sink}/redirect", BODY, HEADERS, timeout=5)
    assert not attempt.ok
    assert attempt.status_code == 302
    assert attempt.error is not None
    assert "redirect not followed" in attempt.error


async def test_a_huge_body_yields_a_1_kib_excerpt(client: DeliveryClient, sink: str) -> None:
    attempt = await send(client, f"{sink}/big", BODY, HEADERS, timeout=10)
    assert attempt.ok
    assert attempt.response_excerpt == "x" * 1024


async def test_excerpt_is_decoded_leniently(client: DeliveryClient, sink: str) -> None:
    attempt = await send(client, f"{sink}/latin", BODY, HEADERS, timeout=5)
    assert attempt.response_excerpt == "caf\ufffd \ufffd ok"


async def test_429_retry_after_seconds_is_recorded(client: DeliveryClient, sink: str) -> None:
    attempt = await send(client, f"{sink}/busy", BODY, HEADERS, timeout=5)
    assert (attempt.status_code, attempt.error, attempt.retry_after) == (429, "HTTP 429", 7.0)
    assert attempt.response_excerpt == "slow down"


async def test_503_retry_after_date_is_recorded_as_seconds(
    client: DeliveryClient, sink: str
) -> None:
    attempt = await send(client, f"{sink}/unavailable", BODY, HEADERS, timeout=5)
    assert attempt.status_code == 503
    assert attempt.retry_after is not None
    assert 100 <= attempt.retry_after <= 121


async def test_retry_after_is_ignored_on_other_statuses(client: DeliveryClient, sink: str) -> None:
    attempt = await send(client, f"{sink}/fail-retry-after", BODY, HEADERS, timeout=5)
    assert (attempt.status_code, attempt.retry_after) == (500, None)


async def test_a_2xx_whose_body_trickles_succeeds_within_the_timeout(
    client: DeliveryClient, sink: str
) -> None:
    started = time.perf_counter()
    attempt = await send(client, f"{sink}/trickle-body", BODY, HEADERS, timeout=0.5)
    assert time.perf_counter() - started < 2.0
    assert attempt.ok
    assert attempt.response_excerpt is not None
    assert attempt.response_excerpt.startswith("accepted; ")


async def test_a_server_that_never_answers_times_out(
    client: DeliveryClient, silent_port: int
) -> None:
    started = time.perf_counter()
    attempt = await send(client, f"http://127.0.0.1:{silent_port}/", BODY, HEADERS, timeout=0.5)
    assert time.perf_counter() - started < 2.0
    assert attempt.status_code is None
    assert attempt.error == "timed out after 0.5 s"
    assert attempt.response_excerpt is None
    assert 400 <= attempt.latency_ms < 2000


@contextlib.asynccontextmanager
async def trickling_server() -> AsyncIterator[int]:
    """A raw server that answers one header byte every 50 ms, forever.

    Each byte resets httpx's per-read timeout, so only an overall deadline can stop it.
    """
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        handlers.add(current)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\n")
            while True:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_a_server_that_trickles_headers_is_cut_off_at_the_timeout(
    client: DeliveryClient,
) -> None:
    async with trickling_server() as port:
        started = time.perf_counter()
        attempt = await send(client, f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=0.5)
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0
    assert attempt.status_code is None
    assert attempt.error == "timed out after 0.5 s"


async def test_connection_refused(client: DeliveryClient, closed_port: int) -> None:
    attempt = await send(client, f"http://127.0.0.1:{closed_port}/", BODY, HEADERS, timeout=5)
    assert attempt.status_code is None
    assert attempt.error == "connection refused"
    assert not attempt.ok


async def test_invalid_url_is_recorded_not_raised(client: DeliveryClient) -> None:
    attempt = await send(client, "ftp://127.0.0.1/", BODY, HEADERS, timeout=5)
    assert attempt.status_code is None
    assert attempt.error == "URL scheme ftp is not allowed: use http or https"
    broken = await send(client, "http://exa mple.com:99999/", BODY, HEADERS, timeout=5)
    assert broken.status_code is None
    assert broken.error is not None
    assert broken.error.startswith(("invalid URL", "port 99999"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("99999999999", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=time.time()) == expected


def test_parse_retry_after_date_is_relative_to_now() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert (
        parse_retry_after(formatdate(now + 90, usegmt=False).replace("+0000", "-0000"), now=now)
        == 90.0
    )


async def test_the_attempt_records_what_was_sent_and_received_with_secrets_redacted(
    client: DeliveryClient, sink: str, received: list[tuple[str, dict[str, str], bytes]]
) -> None:
    secret = generate_secret()
    body = b'{"pad":"' + b"x" * 6000 + b'"}'
    headers = HEADERS | Signer(secret).headers("dlv_7", int(time.time()), body)
    headers |= {"Authorization": "Bearer s3cr3t", "X-Api-Key": "visible"}
    attempt = await send(client, f"{sink}/hook", body, headers, timeout=5)
    assert attempt.ok
    assert attempt.request_method == "POST"
    assert attempt.request_url == f"{sink}/hook"
    sent = dict(attempt.request_headers)
    assert sent["webhook-signature"] == "…"
    assert sent["X-Webhook-Signature"] == "…"
    assert sent["Authorization"] == "…"
    assert sent["X-Api-Key"] == "visible"
    assert sent["webhook-id"] == "dlv_7"
    assert "s3cr3t" not in repr(attempt)
    assert headers["webhook-signature"] not in repr(attempt)
    assert attempt.request_body == body[:4096].decode()
    [(_, got, _)] = received
    assert got["authorization"] == "Bearer s3cr3t"  # only the record is redacted
    answer = {k.lower(): v for k, v in attempt.response_headers}
    assert answer["content-length"] == "6"
    assert answer["server"] == "uvicorn"
    assert attempt.response_excerpt == "thanks"
