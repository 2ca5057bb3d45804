"""`hookgate serve` as a child process (issue 10 items 1, 2, 15): no token in any line of its
output for near-miss event URLs, RSS bounded against an oversized header, one line on
Ctrl-C, the banner only once the port is bound, and a busy port as one sentence."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e

NEAR_MISSES = [
    "//api/event/{t}",
    "/api/events/{t}",
    "/API/EVENT/{t}",
    "/event/{t}",
    "/v1/api/event/{t}",
    "/api//event/{t}",
    "/api/event{t}",
]


def env_for(tmp: Path) -> dict[str, str]:
    return {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp / "data"),
        "HOOKGATE_RULES_DIR": str(tmp / "rules.d"),
        "HOOKGATE_ADMIN_TOKEN": harness.ADMIN_TOKEN,
        "HOOKGATE_LIMITS_UNKNOWN_TOKEN_PER_MINUTE": "100000",
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[harness.ServerProcess]:
    proc = harness.ServerProcess(tmp_path, env_for(tmp_path), name="edge")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_near_miss_event_urls_log_no_token(server: harness.ServerProcess) -> None:
    with server.admin() as admin:
        created = admin.post("/v1/apps", json={"name": "leaky"}).json()
    token = created["token"]
    harness.track_secret(token)
    assert len(token) >= 16
    parts = httpx.URL(server.base_url)
    for template in NEAR_MISSES:
        path = template.format(t=token)
        # raw request line: httpx would normalise `//` and the case is kept as sent
        with socket.create_connection((parts.host, parts.port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: 2\r\nconnection: close\r\n\r\n{{}}".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 404"), (path, answer[:200])
        # and as a websocket upgrade (uvicorn's own websocket line named the path)
        with socket.create_connection((parts.host, parts.port), timeout=10) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
                "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "connection: close\r\n\r\n".encode()
            )
            answer = sock.recv(65536)
        assert not answer.startswith(b"HTTP/1.1 101"), answer[:200]
    # the ingest route itself still answers
    assert (
        httpx.post(f"{server.base_url}/api/event/{token}", json={}, trust_env=False).status_code
        == 202
    )
    server.stop()
    output = server.log_path.read_text()
    assert token not in output
    assert token[:16] not in output
    lines = [
        line for line in output.splitlines() if '"route": null' in line or '"route":null' in line
    ]
    assert len(lines) >= len(NEAR_MISSES), output[-3000:]
    assert any("/api/events/…" in line for line in lines), lines


def test_oversized_header_does_not_grow_the_server(server: harness.ServerProcess) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    before = rss_kib(pid)
    size = 32 * 1024 * 1024
    parts = httpx.URL(server.base_url)
    with socket.create_connection((parts.host, parts.port), timeout=20) as sock:
        head = b"POST /api/event/x HTTP/1.1\r\nhost: x\r\nuser-agent: "
        # refused and closed before the client finished sending
        with contextlib.suppress(OSError):
            sock.sendall(head + b"a" * size + b"\r\ncontent-length: 2\r\n\r\n{}")
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"headers_too_large"' in answer
    after = rss_kib(pid)
    assert after - before < size // 1024 // 4, (before, after)
    assert httpx.get(server.base_url + "/healthz", trust_env=False).status_code == 200


def start_serve(tmp: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp,
        env={**os.environ, **env_for(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def test_sigint_stops_with_one_line_and_banner_follows_the_bind(tmp_path: Path) -> None:
    sock = harness.free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = start_serve(tmp_path, port)
    try:
        assert proc.stdout is not None
        banner = ""
        deadline = time.monotonic() + 30
        while "listening on" not in banner and time.monotonic() < deadline:
            banner = proc.stdout.readline()
            assert banner or proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert banner.strip() == f"hookgate listening on http://127.0.0.1:{port}"
        # the banner is printed once the port is ours: a connection is accepted right away
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        harness.wait_until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{port}/readyz", trust_env=False).status_code == 200
            ),
            timeout=20,
        )
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group (the writer too)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in out + err, out + err
    assert "KeyboardInterrupt" not in out + err
    assert out.splitlines()[-1] == "hookgate stopped"
    # stderr holds the JSON log lines only: no traceback, no error from the SQLite writer
    records = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert all(r["level"] in ("debug", "info", "warning") for r in records), err
    assert proc.returncode in (0, 130)


def test_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    holder = harness.free_socket()
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        proc = start_serve(tmp_path, port)
        out, err = proc.communicate(timeout=30)
    finally:
        holder.close()
    assert proc.returncode == 1, (out, err)
    assert err == f"hookgate: 127.0.0.1:{port} is already in use\n"
    assert "listening on" not in out
    assert not re.search(r"Traceback|Errno", out + err)
