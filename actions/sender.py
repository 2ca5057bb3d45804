"""One HTTP attempt of a delivery: POST, bounded in time, recorded as an `Attempt`.

The sender never raises for network or HTTP failures: the dispatcher needs a record of what
happened, not an exception, and `_describe_failure` is the one place that turns aiohttp,
SSRF-guard and socket errors into the short sentence the delivery log shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp
from multidict import CIMultiDictProxy

from actions.client import DeliveryClient
from actions.errors import UnsafeTargetError
from actions.model import Attempt, redact_headers

EXCERPT_BYTES = 1024
REQUEST_BODY_BYTES = 4096
_MAX_ERROR_CHARS = 200

# Failures that end an attempt. TimeoutError covers the overall deadline (asyncio.timeout)
# and aiohttp's own timeouts; ValueError covers a URL yarl cannot parse.
_FAILURES = (TimeoutError, aiohttp.ClientError, UnsafeTargetError, OSError, ValueError)

_ERRNO_MESSAGES = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EPIPE: "connection closed while sending",
}
CLOSED_BEFORE_ANSWER = "connection closed before the answer"


async def send(
    client: DeliveryClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,  # noqa: ASYNC109 - per-target setting; the deadline is enforced inside
) -> Attempt:
    """POST `body` to `url` once and record the outcome, with what was sent and received.

    Success is any 2xx. Redirects are not followed (a redirect could point past the SSRF
    guard), so a 3xx is a failure. Everything up to the response headers is bounded by
    `timeout` overall, not only per phase, so a receiver that trickles bytes cannot hold the
    attempt longer; the excerpt read shares the same deadline, and if it runs out after a
    2xx the attempt still succeeds with what arrived. `latency_ms` covers the whole attempt.
    A connection that closes before the answer is a failed attempt, never a second POST.
    """
    at = time.time()
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + timeout
    sent_headers: tuple[tuple[str, str], ...] = tuple(headers.items())
    request_body = body[:REQUEST_BODY_BYTES].decode("utf-8", errors="replace")
    try:
        response = await _post(client, url, body, headers, deadline)
    except _FAILURES as exc:
        if isinstance(exc, UnsafeTargetError):  # refused by the guard: nothing left here
            return Attempt(at, None, _elapsed_ms(started), _short(exc.reason), None)
        error, latency = _describe_failure(exc, timeout), _elapsed_ms(started)
        return Attempt(
            at,
            None,
            latency,
            error,
            None,
            request_method="POST",
            request_url=url,
            request_headers=redact_headers(sent_headers),
            request_body=request_body,
        )
    try:
        sent_headers = _pairs(response.request_info.headers)
        excerpt = await _excerpt(response, deadline)
    finally:
        response.release()
    status = response.status
    asked = response.headers.get("retry-after") if status in (429, 503) else None
    return Attempt(
        at=at,
        status_code=status,
        latency_ms=_elapsed_ms(started),
        error=_status_error(status),
        response_excerpt=excerpt,
        retry_after=parse_retry_after(asked, now=time.time()) if asked is not None else None,
        request_method="POST",
        request_url=url,
        request_headers=redact_headers(sent_headers),
        request_body=request_body,
        response_headers=_pairs(response.headers),
    )


async def _post(
    client: DeliveryClient, url: str, body: bytes, headers: Mapping[str, str], deadline: float
) -> aiohttp.ClientResponse:
    """The POST up to the response headers, within the deadline, redirects not followed.
    Only 1 KiB of the answer is kept: compression would save nothing and a compressed chunk
    could inflate far beyond the excerpt before it is cut."""
    target = client.target(url)
    async with asyncio.timeout_at(deadline):
        return await client.session().post(
            target,
            data=body,
            headers={**headers, "Accept-Encoding": "identity"},
            allow_redirects=False,
        )


async def _excerpt(response: aiohttp.ClientResponse, deadline: float) -> str:
    """Up to `EXCERPT_BYTES` of the answer, read within the attempt's deadline. A body that
    fails or stalls mid-read leaves a shorter excerpt; the status stands."""
    excerpt = bytearray()
    with contextlib.suppress(*_FAILURES):
        async with asyncio.timeout_at(deadline):
            while len(excerpt) < EXCERPT_BYTES:
                chunk = await response.content.readany()
                if not chunk:
                    break
                excerpt += chunk
    return excerpt[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def _pairs(headers: CIMultiDictProxy[str]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), v) for k, v in headers.items())


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"redirect not followed (HTTP {status})"
    return f"HTTP {status}"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or HTTP-date), or None.

    A date in the past means no wait (0). Values that are neither form are ignored, as are
    delays of more than ten digits, which no honest receiver sends.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text) if len(text) <= 10 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it wraps (aiohttp wraps the OS and TLS errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, BaseException) and id(os_error) not in seen:
            yield os_error
            seen.add(id(os_error))
        current = current.__cause__ or current.__context__


def _describe_failure(exc: BaseException, timeout: float) -> str:
    """The delivery log's sentence for a failed request: the one place errors are mapped."""
    if isinstance(exc, UnsafeTargetError):
        return _short(exc.reason)
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError) or (
        isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError)
    ):
        return _short(f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return CLOSED_BEFORE_ANSWER
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        message = getattr(cert, "verify_message", None) or str(cert)
        return _short(f"TLS certificate not trusted: {message}")
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _short(f"TLS certificate not trusted: {cause.verify_message}")
        if isinstance(cause, ssl.SSLError):
            return _short(f"TLS error: {cause.reason or cause}")
        if isinstance(cause, socket.gaierror):
            return "cannot resolve host"
        if isinstance(cause, OSError) and cause.errno in _ERRNO_MESSAGES:
            return _ERRNO_MESSAGES[cause.errno]
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "cannot resolve host"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return _short(f"protocol error: {exc.message if hasattr(exc, 'message') else exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _short(f"connection failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return _short(f"connection lost: {exc}")
    return _short(f"request failed: {str(exc) or type(exc).__name__}")


def _short(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 1] + "…"
