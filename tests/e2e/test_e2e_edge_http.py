"""The edge under real uvicorn with hookgate's protocol options (issue 10 items 2, 3, 8):
bounded request headers (431 before any body), capped stored headers, h2c and websocket
upgrade requests served as plain HTTP/1.1, and X-Forwarded-For trusted only from
`server.forwarded_allow_ips`."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import harness
import orjson
import pytest

pytestmark = pytest.mark.e2e

EVENT = b'{"type":"order.created","id":1}'


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[harness.Gateway]:
    settings = harness.make_settings(tmp_path)
    with harness.running_gateway(settings) as gw:
        yield gw


def raw_request(base_url: str, head: bytes, body: bytes = b"", timeout: float = 20) -> bytes:
    """Send one request as raw bytes and read the answer until the head and the declared
    body have arrived (or the server closes)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        # the server may answer and close before taking all of it
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                top, _, rest = data.partition(b"\r\n\r\n")
                for line in top.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(rest) >= int(
                        line.split(b":")[1]
                    ):
                        return data
    return data


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    top, _, body = answer.partition(b"\r\n\r\n")
    assert top.startswith(b"HTTP/1.1 "), answer[:200]
    return int(top.split(b" ")[1]), body


def post_head(path: str, extra: bytes, length: int) -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n%s\r\n" % (path.encode(), length, extra)
    )


def test_oversized_header_is_refused_with_431_naming_the_limit(
    gateway: harness.Gateway,
) -> None:
    _, token = gateway.create_app("big-headers")
    head = post_head(f"/api/event/{token}", b"user-agent: " + b"a" * 40_000 + b"\r\n", 18)
    status, body = status_and_body(raw_request(gateway.base_url, head, EVENT[:18]))
    assert status == 431
    assert orjson.loads(body) == {"error": "headers_too_large", "limit": 16384}
    # many small headers count together
    many = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 200) for i in range(100))
    status, body = status_and_body(raw_request(gateway.base_url, post_head("/v1/apps", many, 2)))
    assert status == 431
    assert orjson.loads(body)["error"] == "headers_too_large"
    # no event was stored, and a normal request on a new connection is served
    assert gateway.admin.get("/v1/events").json()["data"] == []
    assert gateway.post_event(token, {"type": "ok"}).status_code == 202


def test_stored_headers_are_capped_at_64_names_and_1_kib_values(
    gateway: harness.Gateway,
) -> None:
    _, token = gateway.create_app("capped")
    headers = {"x-long": "u" * 5000, **{f"x-extra-{i:03d}": "v" for i in range(80)}}
    headers["authorization"] = "Bearer sender-credential"
    response = gateway.post_event(token, {"type": "capped"}, headers=headers)
    assert response.status_code == 202, response.text
    event = gateway.admin.get("/v1/events").json()["data"][0]
    full = gateway.admin.get(f"/v1/events/{event['id']}").json()
    stored = full["headers"]
    assert len(stored) == 64
    assert all(len(value) <= 1024 for value in stored.values())
    assert stored["x-long"] == "u" * 1024
    assert "authorization" not in stored


@pytest.mark.parametrize(
    "upgrade",
    [
        b"connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n"
        b"http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        b"connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ],
    ids=["h2c", "websocket"],
)
def test_upgrade_requests_are_ordinary_http11_requests(
    gateway: harness.Gateway, upgrade: bytes
) -> None:
    _, token = gateway.create_app("upgraded-" + secrets.token_hex(3))
    answer = raw_request(
        gateway.base_url, post_head(f"/api/event/{token}", upgrade, len(EVENT)), EVENT
    )
    status, body = status_and_body(answer)
    assert status == 202, body
    assert not answer.startswith(b"HTTP/1.1 101")
    events = gateway.admin.get("/v1/events").json()["data"]
    assert len(events) == 1 and events[0]["event_type"] == "order.created"
    # an admin route too: the body is read, the request answered
    create = orjson.dumps({"name": "via-upgrade-" + secrets.token_hex(3)})
    head = post_head(
        "/v1/apps",
        upgrade + f"authorization: Bearer {harness.ADMIN_TOKEN}\r\n".encode(),
        len(create),
    )
    status, body = status_and_body(raw_request(gateway.base_url, head, create))
    assert status == 201, body
    harness.track_secret(orjson.loads(body)["token"])
    # GET routes as well
    get = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n" + upgrade + b"\r\n"
    status, _ = status_and_body(raw_request(gateway.base_url, get))
    assert status == 200


def _read_answers(sock: socket.socket, count: int, head_only: bool = False) -> list[bytes]:
    """`count` whole answers from `sock`, each by its content-length (only its head for an
    answer to HEAD)."""
    data, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} answers: {data!r}"
            data += chunk
        top, _, rest = data.partition(b"\r\n\r\n")
        length = 0 if head_only else int(_header(top, b"content-length"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, f"closed inside an answer: {data!r}"
            rest += chunk
        answers.append(top + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    assert data == b"", f"more than {count} answers: {data!r}"
    return answers


def _header(top: bytes, name: bytes) -> bytes:
    for line in top.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {top!r}")


def test_ingest_answers_keep_the_connection_and_close_it_when_asked(
    gateway: harness.Gateway,
) -> None:
    """The ingest endpoint writes its answers itself (`hookgate.respond`): pipelined
    requests on one connection get whole answers in order, HTTP/1.0 gets `connection:
    close`, and HEAD gets the head alone."""
    _, token = gateway.create_app("raw-answers")
    parts = urlsplit(gateway.base_url)
    post = post_head(f"/api/event/{token}", b"", len(EVENT)) + EVENT
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(post * 3)
        answers = _read_answers(sock, 3)
        sock.sendall(b"HEAD /api/event/%s HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" % token.encode())
        (head,) = _read_answers(sock, 1, head_only=True)
        sock.sendall(post)  # still open after all of them
        answers += _read_answers(sock, 1)
    ids = set()
    for answer in answers:
        top, _, body = answer.partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 202 Accepted\r\n"), answer
        assert _header(top, b"content-type") == b"application/json"
        assert int(_header(top, b"content-length")) == len(body)
        assert int(_header(top, b"ratelimit-remaining")) >= 0
        assert _header(top, b"date")
        assert b"connection:" not in top.lower()
        ids.add(orjson.loads(body)["event_id"])
    assert len(ids) == 4
    assert head.startswith(b"HTTP/1.1 405 ")
    assert int(_header(head, b"content-length")) > 0  # the length of the body not sent
    assert _header(head, b"allow") == b"POST"

    old = post.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(old)
        (answer,) = _read_answers(sock, 1)
        assert sock.recv(65536) == b""  # and the server closed the connection
    top, _, body = answer.partition(b"\r\n\r\n")
    assert top.startswith(b"HTTP/1.1 202 "), answer
    assert _header(top, b"connection") == b"close"
    stored = gateway.admin.get("/v1/events", params={"limit": 10}).json()["data"]
    assert {e["id"] for e in stored} == ids | {orjson.loads(body)["event_id"]}


def _unknown_token_statuses(gateway: harness.Gateway) -> list[int]:
    statuses = []
    for i in range(100):
        response = gateway.public.post(
            f"/api/event/{secrets.token_urlsafe(24)}",
            content=b"{}",
            headers={"content-type": "application/json", "x-forwarded-for": f"198.51.100.{i}"},
        )
        statuses.append(response.status_code)
    return statuses


def test_forwarded_for_is_not_trusted_by_default(gateway: harness.Gateway) -> None:
    statuses = _unknown_token_statuses(gateway)
    assert 429 in statuses
    assert set(statuses) <= {404, 429}


def test_forwarded_for_is_trusted_from_listed_proxies(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, server={"forwarded_allow_ips": ["127.0.0.1"]})
    with harness.running_gateway(settings) as gw:
        statuses = _unknown_token_statuses(gw)
    assert statuses == [404] * 100
