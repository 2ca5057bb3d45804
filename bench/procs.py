"""Start and stop the processes a benchmark needs: uvicorn apps, hookgate, wrk."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
UVICORN_FLAGS = [
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        return rss_mb(self.popen.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@contextlib.contextmanager
def uvicorn_app(
    target: str, workdir: Path, name: str, app_dir: Path | None = None
) -> Iterator[Proc]:
    port = free_port()
    log = workdir / f"{name}.log"
    cmd = [sys.executable, "-m", "uvicorn", target, "--port", str(port), *UVICORN_FLAGS]
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    with open(log, "wb") as out:
        popen = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(popen, port, log)
    try:
        wait_http(proc.url + "/")
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def hookgate(workdir: Path, env: dict[str, str], name: str = "hookgate") -> Iterator[Proc]:
    """`hookgate serve` with the given HOOKGATE_* environment, cwd `workdir`."""
    port = free_port()
    log = workdir / f"{name}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
    full_env.update(env)
    full_env["HOOKGATE_SERVER_PORT"] = str(port)
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc = Proc(popen, port, log)
    try:
        wait_http(proc.url + "/readyz", timeout=120)
        yield proc
    finally:
        proc.stop()


class HangServer:
    """Accepts TCP connections and never answers: the hung downstream target."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()
