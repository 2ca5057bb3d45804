"""`hookgate serve` with an invalid rule file refuses to start, as nginx does with a bad
configuration: every error on stderr as `file:rule-id: message`, exit status 2, and the port
never bound. A real child process, run as the operator runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

GOOD = '[[rules]]\nid = "ok"\n  [[rules.actions]]\n  type = "webhook"\n  url = "http://127.0.0.1:9/h"\n'
BAD = (
    '[[rules]]\nid = "typo"\nwhen = { vr = "x" }\n'
    '  [[rules.actions]]\n  type = "webhook"\n  url = "ftp://nowhere"\n'
    '[[rules]]\nid = "signed"\n'
    '  [[rules.actions]]\n  type = "webhook"\n  url = "http://127.0.0.1:9/h"\n'
    '  secret_env = "HG_SERVE_SECRET"\n'
)


def serve(cwd: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "HOOKGATE_ADMIN_TOKEN": harness.ADMIN_TOKEN,
        "HG_SERVE_SECRET": "whsec_notbase64!!",
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "a.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "rules.d" / "b.toml").write_text(BAD, encoding="utf-8")
    (tmp_path / "hookgate.toml").write_text('[storage]\nbackend = "memory"\n', encoding="utf-8")


def test_serve_with_an_invalid_rule_file_exits_2_with_every_error(tmp_path: Path) -> None:
    write_rules(tmp_path)
    result = serve(tmp_path, free_port())

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "rules.d/b.toml:typo: when: unknown operator `vr`; did you mean `var`?",
        "rules.d/b.toml:typo: actions[0].url: must be an absolute http:// or https:// URL "
        "with a host, got 'ftp://nowhere'",
        "rules.d/b.toml:signed: actions[0].secret_env: not a valid signing secret "
        "(expected whsec_<base64>)",
    ]
    assert lines[3].startswith("hookgate: not starting: 3 rule errors in ./rules.d")
    assert len(lines) == 4
    assert "listening" not in result.stdout
    assert "notbase64" not in result.stdout + result.stderr


def test_serve_refuses_before_binding_its_port(tmp_path: Path) -> None:
    # The port is held (listening, no SO_REUSEADDR): a server that tried to bind it would
    # fail on "address in use" instead; it exits 2 on the rules, and the port is still ours.
    write_rules(tmp_path)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        result = serve(tmp_path, port)
        assert result.returncode == 2, result.stderr
        assert "in use" not in result.stderr and "Errno" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("hookgate: not starting:")
    # Freed by us, nobody else listens there: the child never served.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False)


def test_serve_starts_once_the_rules_are_fixed(tmp_path: Path) -> None:
    write_rules(tmp_path)
    (tmp_path / "rules.d" / "b.toml").unlink()
    server = harness.ServerProcess(tmp_path, {"HOOKGATE_STORAGE_BACKEND": "memory"})
    try:
        base = server.start()
        with server.admin() as admin:
            assert [r["id"] for r in admin.get("/v1/rules").json()["data"]] == ["ok"]
        assert base
    finally:
        server.stop()
