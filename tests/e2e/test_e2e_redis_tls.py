"""One `rediss://` URL for the store, the guessing guard and the rate limiter, against a
`redis-server` with TLS (and client certificates) started here; and a Redis Cluster node,
which `hookgate serve` and `hookgate worker` refuse in one line, exit status 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import harness
import httpx
import pytest
import redis
import trustme

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REDIS_SERVER = shutil.which("redis-server")


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with harness.free_socket() as sock:
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway `redis-server` on a free loopback port, no persistence."""

    def __init__(self, tmp: Path, *args: str) -> None:
        """`args` are redis-server options; without a `--port` of their own it gets a free one."""
        if REDIS_SERVER is None:
            _unavailable("redis-server is not installed")
        self.port = _free_port()
        self.tls = "--tls-port" in args
        if "--port" not in args:
            args = ("--port", str(self.port), *args)
        self.log = tmp / f"redis-{self.port}.log"
        self.out = tmp / f"redis-{self.port}.out"
        with open(self.out, "wb") as out:
            self.proc = self._start(args, tmp, out)

    def _start(self, args: tuple[str, ...], tmp: Path, out: IO[bytes]) -> subprocess.Popen[bytes]:
        assert REDIS_SERVER is not None
        return subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
                "--logfile",
                str(self.log),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def wait(self, client: redis.Redis) -> None:
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                text = "".join(p.read_text() for p in (self.out, self.log) if p.exists())
                # a build without TLS refuses the tls-* options or the TLS listener
                if self.tls and "tls" in text.lower():
                    self.stop()
                    _unavailable(f"this redis-server build has no TLS: {text.strip()[-300:]}")
                raise RuntimeError(f"redis-server exited: {text[-1000:]}")
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """The rediss:// URL of a TLS-only redis-server that also demands a client certificate."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("hookgate-client")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    client_cert.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client_cert.private_key_pem.write_to_path(str(files["client_key"]))
    port = _free_port()
    server = RedisServer(
        tmp_path,
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(files["cert"]),
        "--tls-key-file",
        str(files["key"]),
        "--tls-ca-cert-file",
        str(files["ca"]),
        "--tls-auth-clients",
        "yes",
    )
    query = "&".join(
        f"{name}={quote(str(value))}"
        for name, value in (
            ("ssl_cert_reqs", "required"),
            ("ssl_ca_certs", files["ca"]),
            ("ssl_certfile", files["client_cert"]),
            ("ssl_keyfile", files["client_key"]),
        )
    )
    url = f"rediss://127.0.0.1:{port}/0?{query}"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        server.wait(client)
        yield url
    finally:
        client.close()
        server.stop()


def test_one_rediss_url_serves_the_store_the_guard_and_the_limiter(
    tmp_path: Path, tls_redis: str
) -> None:
    # Without the client certificate the server refuses the handshake: TLS is really on.
    with pytest.raises(redis.ConnectionError):
        bare = tls_redis.split("&ssl_certfile")[0]
        redis.Redis.from_url(bare, socket_connect_timeout=1).ping()
    env = {
        "HOOKGATE_REDIS_URL": tls_redis,
        "HOOKGATE_STORAGE_BACKEND": "redis",
        "HOOKGATE_LIMITS_BACKEND": "redis",
        "HOOKGATE_LIMITS_ON_REDIS_ERROR": "open",  # a limiter without TLS would admit all
        "HOOKGATE_LIMITS_UNKNOWN_TOKEN_PER_MINUTE": "3",
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_DELIVERY_WORKERS": "0",
    }
    server = harness.ServerProcess(tmp_path, env, "tls")
    server.start()
    try:
        with (
            server.admin() as admin,
            httpx.Client(base_url=server.base_url, trust_env=False) as public,
        ):
            created = admin.post("/v1/apps", json={"name": "tls", "rate": 0.01, "burst": 2})
            assert created.status_code == 201, created.text
            token = created.json()["token"]
            harness.track_secret(token)
            statuses = [
                public.post(f"/api/event/{token}", json={"n": n}).status_code for n in range(3)
            ]
            # the limiter's bucket, in the TLS Redis: the third exceeds the burst of 2
            assert statuses == [202, 202, 429]
            # the store: both events, read back through the admin API
            listed = admin.get("/v1/events").json()
            assert len(listed["data"]) == 2
            # the guard: three misses allowed a minute, the fourth is refused
            misses = [
                public.post("/api/event/no-such-token", json={}).status_code for _ in range(4)
            ]
            assert misses == [404, 404, 404, 429]
            scrape = admin.get("/metrics").text
            assert "hookgate_ratelimit_redis_errors_total" not in scrape
    finally:
        server.stop()
    client = redis.Redis.from_url(tls_redis)
    try:
        keys = [key.decode() for key in client.scan_iter(count=1000)]
    finally:
        client.close()
    # all three clients wrote to this Redis: the store, the limiter's buckets, the guard
    assert any(key.startswith("{hookgate:store}:") for key in keys), keys
    assert any(key.startswith("{hookgate:rl}:app:") for key in keys), keys
    assert any("hookgate:guard" in key for key in keys), keys


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_redis_cluster_node_is_refused_at_start(tmp_path: Path, command: str) -> None:
    node = RedisServer(
        tmp_path,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        str(tmp_path / "nodes.conf"),
    )
    url = f"redis://127.0.0.1:{node.port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        node.wait(client)
        assert client.info("cluster")["cluster_enabled"] == 1
        env = {
            **os.environ,
            "HOOKGATE_REDIS_URL": url,
            "HOOKGATE_STORAGE_BACKEND": "redis",
            "HOOKGATE_LIMITS_BACKEND": "redis",
            "HOOKGATE_ADMIN_TOKEN": harness.ADMIN_TOKEN,
            "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
            "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        }
        args = [sys.executable, "-m", "gateway.cli", command]
        if command == "serve":
            args += ["--port", str(_free_port())]
        done = subprocess.run(args, env=env, capture_output=True, timeout=30, cwd=tmp_path)
    finally:
        client.close()
        node.stop()
    assert done.returncode == 2, done.stderr.decode()
    lines = done.stderr.decode().strip().splitlines()
    assert lines == [
        "hookgate: redis.url points at a Redis Cluster node (cluster_enabled:1); hookgate "
        "needs a standalone Redis (replicas and Sentinel failover are fine): not starting"
    ]
    assert b"listening" not in done.stdout
