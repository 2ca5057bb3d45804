"""Redis failures under the Redis rate-limit backend (docs/design.md §3; issue 2 acceptance):
with Redis gone, no request gets a 5xx and events are still accepted (fail-open to
in-process buckets, counted in `hookgate_ratelimit_redis_errors_total`); with
`on_redis_error = "closed"` requests are refused with a 429, never a 5xx.

The machine's shared Redis is never stopped: these tests point at a closed port or at a
throwaway `redis-server` of their own, which they kill.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
import redis

pytestmark = pytest.mark.e2e

PREFIX = "hgoutage:"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_errors(gw: harness.Gateway) -> float:
    text = gw.public.get("/metrics").text
    match = re.search(r"^hookgate_ratelimit_redis_errors_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def redis_settings(tmp: Path, url: str, **limits: Any) -> Any:
    return harness.make_settings(
        tmp,
        limits={"backend": "redis", **limits},
        redis={"url": url, "key_prefix": PREFIX},
    )


class OwnRedis:
    """A throwaway redis-server on a free loopback port, keeping nothing on disk."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = closed_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.tmp)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        harness.wait_until(self.answers, timeout=10)

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stored_keys(self) -> list[str]:
        client = redis.Redis.from_url(self.url)
        try:
            return sorted(k.decode() for k in client.scan_iter(match="*"))
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_redis_on_a_closed_port_fails_open_to_in_process_buckets(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with harness.running_gateway(redis_settings(tmp_path, url)) as gw:
        app_id, token = gw.create_app("acme", rate=0.01, burst=3)
        statuses = [gw.post_event(token, {"n": i}).status_code for i in range(5)]
        # accepted, and still limited: the in-process fallback applies the app's bucket
        assert statuses == [202, 202, 202, 429, 429]
        assert redis_errors(gw) >= 1
        # the token-guessing guard (limits on Redis) fails open as well: a plain 404
        miss = gw.post_event("no-such-token", {})
        assert (miss.status_code, miss.content) == (404, b'{"error":"not_found"}')
        stored = gw.admin.get("/v1/events", params={"app_id": app_id}).json()["data"]
        assert len(stored) == 3
        assert gw.public.get("/readyz").status_code == 200


def test_redis_stopped_mid_test_keeps_accepting_and_recovers(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    with harness.running_gateway(redis_settings(tmp_path, own_redis.url)) as gw:
        # a slow refill keeps the app's bucket key alive in Redis for minutes (a bucket's
        # key expires once the bucket is full again), and a big burst never refuses here
        app_id, token = gw.create_app("acme", rate=0.01, burst=1000)
        for i in range(3):
            assert gw.post_event(token, {"n": i}).status_code == 202
        # the buckets really are in this Redis
        assert "{" + PREFIX + "rl}:app:" + app_id in own_redis.stored_keys()
        assert redis_errors(gw) == 0

        own_redis.kill()
        statuses = [gw.post_event(token, {"n": 10 + i}).status_code for i in range(10)]
        assert statuses == [202] * 10
        errors_while_down = redis_errors(gw)
        assert errors_while_down >= 1
        assert gw.post_event("no-such-token", {}).status_code == 404

        # Redis comes back on the same port: the buckets go back to it
        own_redis.start()
        assert own_redis.stored_keys() == []

        def bucket_back_in_redis() -> bool:
            assert gw.post_event(token, {"n": "again"}).status_code == 202
            return "{" + PREFIX + "rl}:app:" + app_id in own_redis.stored_keys()

        harness.wait_until(bucket_back_in_redis, timeout=10, interval=0.1)
        stored = gw.admin.get("/v1/events", params={"app_id": app_id, "limit": 500})
        assert len(stored.json()["data"]) >= 14


def test_fail_closed_refuses_with_429_not_5xx(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    settings = harness.make_settings(
        tmp_path,
        limits={"backend": "redis", "on_redis_error": "closed"},
        redis={"url": url, "key_prefix": PREFIX},
    )
    with harness.running_gateway(settings) as gw:
        client = gw.admin
        created = client.post("/v1/apps", json={"name": "acme"})
        assert created.status_code == 201
        token = created.json()["token"]
        harness.track_secret(token)
        app_id = created.json()["id"]
        for _ in range(3):
            response = client.post(
                f"/api/event/{token}",
                content=b"{}",
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 429
            assert response.content == b'{"rateLimited":true}'
            assert response.headers["retry-after"].isdigit()
            assert int(response.headers["retry-after"]) >= 1
        assert client.get("/v1/events", params={"app_id": app_id}).json()["data"] == []
        metrics = client.get("/metrics").text
        match = re.search(r"^hookgate_ratelimit_redis_errors_total (\S+)$", metrics, re.M)
        assert match and float(match.group(1)) >= 1
        # unknown tokens are still a plain 404: the guard does not fail closed
        miss = client.post("/api/event/no-such-token", content=b"{}")
        assert (miss.status_code, miss.content) == (404, b'{"error":"not_found"}')
