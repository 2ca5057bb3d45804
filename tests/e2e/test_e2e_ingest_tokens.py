"""Secret event URLs (docs/design.md §3): the 404 for an unknown token is the same bytes whatever
the guess looks like, and the token-guessing guard answers an address that collects
`limits.unknown_token_per_minute` misses with 429s, even for a valid token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

NOT_FOUND = b'{"error":"not_found"}'
RATE_LIMITED = b'{"rateLimited":true}'


def answer(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a client sees, minus the Date header."""
    headers = sorted((k, v) for k, v in response.headers.items() if k != "date")
    return response.status_code, response.content, headers


def raw_post(base_url: str, raw_path: bytes, body: bytes = b"{}") -> httpx.Response:
    """POST with the path bytes exactly as given (no client-side normalisation)."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        request = client.build_request(
            "POST",
            base_url + "/",
            content=body,
            headers={"content-type": "application/json"},
        )
        request.url = request.url.copy_with(raw_path=raw_path)
        return client.send(request)


def test_unknown_token_404_is_the_same_bytes_whatever_the_token(
    gateway: harness.Gateway,
) -> None:
    _, token = gateway.create_app("real")
    near_misses = [
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character off
        "B" + token[1:] if token[0] != "B" else "C" + token[1:],
        token[:-1],  # a prefix
        token + "x",  # an extension
        token.swapcase(),
        token + "/",
    ]
    guesses = [
        "x",
        "0",
        "a" * 32,
        "a" * 4000,
        "évènement",
        "💥🔑",
        "%E2%82%AC",
        "a%2Fb",
        "..%2F..%2Fv1%2Fapps",
        "%00",
        "%FF%FE",
        "token with spaces",
        "~!$&'()*+,;=:@",
        *near_misses,
    ]
    reference = answer(gateway.post_event("definitely-not-a-token", {}))
    assert reference[0] == 404
    assert reference[1] == NOT_FOUND
    for guess in guesses:
        response = gateway.public.post(
            f"/api/event/{guess}", content=b"{}", headers={"content-type": "application/json"}
        )
        assert answer(response) == reference, guess
    for raw in (b"/api/event/", b"/api/event/%", b"/api/event/%zz", b"/api/event//"):
        assert answer(raw_post(gateway.base_url, raw)) == reference, raw
    # the real token still works, and nothing above was stored
    accepted = gateway.post_event(token, {})
    assert accepted.status_code == 202
    assert len(gateway.admin.get("/v1/events").json()["data"]) == 1


def test_404_does_not_depend_on_the_body_or_its_size(gateway: harness.Gateway) -> None:
    reference = answer(gateway.post_event("nope", {}))
    for body in (b"", b"not json", b"[]", b'{"a":"' + b"x" * 3_000_000 + b'"}'):
        response = gateway.public.post("/api/event/nope", content=body)
        assert answer(response) == reference


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[harness.Gateway]:
    settings = harness.make_settings(tmp_path, limits={"unknown_token_per_minute": 5})
    with harness.running_gateway(settings) as running:
        yield running


def test_too_many_unknown_tokens_from_one_address_get_429(guarded: harness.Gateway) -> None:
    app_id, token = guarded.create_app("real")
    assert guarded.post_event(token, {"before": True}).status_code == 202
    for i in range(5):
        miss = guarded.post_event(f"guess-{i}", {})
        assert (miss.status_code, miss.content) == (404, NOT_FOUND), i
    blocked = guarded.post_event("guess-5", {})
    assert blocked.status_code == 429
    assert blocked.content == RATE_LIMITED
    assert int(blocked.headers["retry-after"]) >= 1
    # from now on this address learns nothing: a valid token gets the same 429
    valid = guarded.post_event(token, {"after": True})
    assert valid.status_code == 429
    assert valid.content == RATE_LIMITED
    stored = guarded.admin.get("/v1/events", params={"app_id": app_id}).json()["data"]
    assert [e["payload"] for e in stored] == [{"before": True}]
    metrics = guarded.public.get("/metrics").text
    assert 'hookgate_rate_limited_total{scope="guard"} 2' in metrics.splitlines()


def test_guard_counts_per_address(guarded: harness.Gateway) -> None:
    _, token = guarded.create_app("real")
    for i in range(6):
        guarded.post_event(f"guess-{i}", {})
    assert guarded.post_event(token, {}).status_code == 429
    # another loopback address has its own count
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=guarded.base_url, transport=transport, trust_env=False) as other:
        response = other.post(
            f"/api/event/{token}", content=b"{}", headers={"content-type": "application/json"}
        )
        assert response.status_code == 202
        miss = other.post("/api/event/guess", content=b"{}")
        assert (miss.status_code, miss.content) == (404, NOT_FOUND)


def test_known_tokens_do_not_count_as_misses(guarded: harness.Gateway) -> None:
    _, token = guarded.create_app("real", rate=1000, burst=1000)
    for i in range(20):
        assert guarded.post_event(token, {"n": i}).status_code == 202
    for i in range(5):
        assert guarded.post_event(f"guess-{i}", {}).status_code == 404
    assert guarded.post_event(token, {}).status_code == 202
