"""The README walk-through works as written: its shell blocks run verbatim against a
gateway started the way `make run` starts it, on a free port the README does not know: its
URLs come from what the server hands out; only the listener's port is swapped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import pytest

pytestmark = pytest.mark.e2e

README = harness.REPO / "README.md"


def blocks(marker: str) -> list[str]:
    text = README.read_text()
    return re.findall(rf"<!-- {marker} -->\n```sh\n(.*?)```", text, flags=re.S)


def make_run_env() -> dict[str, str]:
    """The environment `make run` gives `hookgate serve` (read from the Makefile)."""
    recipe = (harness.REPO / "Makefile").read_text().split("\nrun:", 1)[1]
    env = dict(re.findall(r"(HOOKGATE_[A-Z_]+)=\$\$\{HOOKGATE_[A-Z_]+:-([^}]+)\}", recipe))
    assert env, "make run sets no HOOKGATE_* defaults?"
    return env


def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    steps = blocks("walkthrough")
    listen = blocks("walkthrough:listen")
    assert len(steps) >= 3 and len(listen) == 1
    os.symlink(harness.REPO / ".venv", tmp_path / ".venv")
    shutil.copytree(harness.REPO / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
    env.update(make_run_env())
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    # As with `make run`, no admin token is configured: the server generates one.
    server = harness.ServerProcess(tmp_path, {**env, "HOOKGATE_ADMIN_TOKEN": ""}, "readme")
    base = server.start()
    assert not base.endswith(":8000")
    with harness.free_socket() as probe:
        listen_port = str(probe.getsockname()[1])

    assert not any("8000" in step for step in steps), "the walk-through hard-codes a port"

    def localize(script: str) -> str:
        return script.replace("9000", listen_port)

    listen_log = tmp_path / "listen.log"
    with open(listen_log, "wb") as out:
        listener = subprocess.Popen(
            ["bash", "-c", localize(listen[0])],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        harness.wait_until(
            lambda: "listening" in listen_log.read_text().lower() or _port_open(int(listen_port)),
            timeout=15,
        )
        script = "set -euo pipefail\n" + "\n".join(localize(s) for s in steps)
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        app = (tmp_path / "app.json").read_text()
        harness.track_secret(re.search(r'"token":\s*"([^"]+)"', app).group(1))  # type: ignore[union-attr]
        for secret in re.findall(r'"secret":"(whsec_[^"]+)"', out):
            harness.track_secret(secret)
        assert '"event_url"' in app
        assert '"accepted":true' in out
        assert '"matched_rules":["forward-inbound-messages"' in out
        harness.wait_until(lambda: "message.inbound" in listen_log.read_text(), timeout=10)
    finally:
        listener.terminate()
        listener.wait(timeout=10)
        server.stop()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
