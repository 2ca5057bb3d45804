"""`hookgate listen`: a real uvicorn sink on a free port, driven with httpx, output captured."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from actions.client import ClientSettings, DeliveryClient
from actions.errors import ActionError
from actions.listen import build_listen_app
from actions.sender import send
from actions.signing import Signer, generate_secret
from actions.ssrf import AddressPolicy

Serve = Callable[[Any], contextlib.AbstractAsyncContextManager[str]]
SECRET = generate_secret()
BODY = b'{"to":"+15551234567","text":"Thanks Ada!"}'


async def test_prints_request_headers_and_pretty_json_and_valid_signature(
    serve_app: Serve, client: httpx.AsyncClient
) -> None:
    out = io.StringIO()
    headers = {"Content-Type": "application/json", "User-Agent": "hookgate/test"}
    headers |= Signer(SECRET).headers("dlv_42", int(time.time()), BODY)
    async with serve_app(build_listen_app(secret=SECRET, status=200, out=out)) as base_url:
        response = await client.post(f"{base_url}/hooks/sms?x=1", content=BODY, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    printed = out.getvalue()
    assert printed.startswith("POST /hooks/sms?x=1\n")
    assert "  content-type: application/json\n" in printed
    assert "  user-agent: hookgate/test\n" in printed
    assert "  webhook-id: dlv_42\n" in printed
    assert "  webhook-timestamp: " in printed
    assert "  webhook-signature: v1," in printed
    assert "  x-webhook-signature: sha256=" in printed
    assert "  signature: valid\n" in printed
    assert '{\n  "to": "+15551234567",\n  "text": "Thanks Ada!"\n}' in printed


async def test_wrong_secret_is_reported_invalid_with_the_reason(
    serve_app: Serve, client: httpx.AsyncClient
) -> None:
    out = io.StringIO()
    headers = Signer(generate_secret()).headers("dlv_1", int(time.time()), BODY)
    async with serve_app(build_listen_app(secret=SECRET, status=200, out=out)) as base_url:
        await client.post(f"{base_url}/", content=BODY, headers=headers)
        await client.post(f"{base_url}/", content=BODY)
    first, second = out.getvalue().split("\n\n")[:2]
    assert "  signature: INVALID (no matching signature)" in first
    assert "  signature: INVALID (missing signature headers)" in second


async def test_without_a_secret_no_signature_verdict_is_printed(
    serve_app: Serve, client: httpx.AsyncClient
) -> None:
    out = io.StringIO()
    async with serve_app(build_listen_app(secret=None, status=200, out=out)) as base_url:
        await client.put(f"{base_url}/a/b", content=b"plain words, not JSON")
    printed = out.getvalue()
    assert printed.startswith("PUT /a/b\n")
    assert "signature:" not in printed
    assert "plain words, not JSON" in printed


async def test_answers_the_configured_status(serve_app: Serve, client: httpx.AsyncClient) -> None:
    async with serve_app(build_listen_app(secret=None, status=503, out=io.StringIO())) as url:
        failing = await client.post(f"{url}/x", content=b"{}")
    assert failing.status_code == 503
    assert failing.json() == {"ok": True}
    async with serve_app(build_listen_app(secret=None, status=204, out=io.StringIO())) as url:
        empty = await client.post(f"{url}/x", content=b"{}")
    assert (empty.status_code, empty.content) == (204, b"")


async def test_empty_body_and_control_characters_are_shown_safely(
    serve_app: Serve, client: httpx.AsyncClient
) -> None:
    out = io.StringIO()
    async with serve_app(build_listen_app(secret=None, status=200, out=out)) as base_url:
        await client.get(f"{base_url}/ping")
        await client.post(f"{base_url}/t", content=b"line one\n\x1b[2K\r  signature: valid")
    printed = out.getvalue()
    assert "GET /ping\n" in printed
    assert "(empty body)" in printed
    assert "\x1b" not in printed
    assert "\r" not in printed
    assert "\\x1b[2K\\x0d  signature: valid" in printed


async def test_a_signed_delivery_from_the_sender_verifies_at_the_sink(serve_app: Serve) -> None:
    out = io.StringIO()
    headers = {"Content-Type": "application/json"}
    headers |= Signer(SECRET).headers("dlv_e2e", int(time.time()), BODY)
    async with serve_app(build_listen_app(secret=SECRET, status=200, out=out)) as base_url:
        client = DeliveryClient(ClientSettings(policy=AddressPolicy(allow_private=True)))
        try:
            attempt = await send(client, f"{base_url}/in", BODY, headers, timeout=5)
        finally:
            await client.aclose()
    assert attempt.ok
    assert attempt.response_excerpt == '{"ok":true}'
    assert "  signature: valid\n" in out.getvalue()


@pytest.mark.parametrize("status", [100, 199, 600])
def test_status_outside_200_599_is_refused(status: int) -> None:
    with pytest.raises(ActionError, match="between 200 and 599"):
        build_listen_app(secret=None, status=status, out=io.StringIO())


def test_malformed_secret_is_refused_before_listening() -> None:
    with pytest.raises(ActionError, match="base64"):
        build_listen_app(secret="whsec_not*base64", status=200, out=io.StringIO())


async def test_headers_all_prints_every_header_a_rule_set(
    serve_app: Serve, client: httpx.AsyncClient
) -> None:
    default, everything = io.StringIO(), io.StringIO()
    headers = {"Content-Type": "application/json", "X-Api-Key": "k-123", "X-Tenant": "acme"}
    async with serve_app(build_listen_app(secret=None, status=200, out=default)) as base_url:
        await client.post(f"{base_url}/in", content=BODY, headers=headers)
    app = build_listen_app(secret=None, status=200, out=everything, all_headers=True)
    async with serve_app(app) as base_url:
        await client.post(f"{base_url}/in", content=BODY, headers=headers)
    assert "x-api-key" not in default.getvalue()
    printed = everything.getvalue()
    assert "  x-api-key: k-123\n" in printed
    assert "  x-tenant: acme\n" in printed
    assert "  content-type: application/json\n" in printed
    assert "  host: 127.0.0.1:" in printed


def test_the_cli_passes_headers_all_to_the_listener() -> None:
    from gateway.cli import build_parser

    assert build_parser().parse_args(["listen", "9000", "--headers", "all"]).headers == "all"
    assert build_parser().parse_args(["listen", "9000"]).headers == "webhook"
