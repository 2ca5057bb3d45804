"""deploy/nginx/hookgate.conf, run by the real nginx in front of a real `hookgate serve`:
TLS ends at nginx, the client address reaches the guessing guard through X-Forwarded-For
(`server.forwarded_allow_ips`), and the event URLs handed out (`server.public_url`) are the
proxy's and work."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import httpx
import pytest
import trustme

pytestmark = [pytest.mark.e2e]

NGINX = Path("/usr/sbin/nginx")
CONF = harness.REPO / "deploy" / "nginx" / "hookgate.conf"
GUESSES = 3  # limits.unknown_token_per_minute


def _free_port() -> int:
    with harness.free_socket() as sock:
        return int(sock.getsockname()[1])


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/nginx/hookgate.conf no longer contains {old!r}"
    return text.replace(old, new)


@dataclass
class Proxy:
    url: str  # https://127.0.0.1:<port>
    ca: trustme.CA
    gateway: harness.ServerProcess

    def client(self, source: str) -> httpx.Client:
        """A client whose connections come from `source` (a loopback address of its own)."""
        ssl_context = ssl.create_default_context()
        self.ca.configure_trust(ssl_context)
        transport = httpx.HTTPTransport(local_address=source, verify=ssl_context)
        return httpx.Client(base_url=self.url, transport=transport, trust_env=False, timeout=10)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    if not NGINX.exists():
        message = f"{NGINX} is not installed (Debian package nginx-light)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    https_port, http_port = _free_port(), _free_port()
    public_url = f"https://127.0.0.1:{https_port}"
    gateway = harness.ServerProcess(
        tmp_path,
        {
            "HOOKGATE_SERVER_PUBLIC_URL": public_url,
            # nginx is the only trusted peer; clients come from other loopback addresses
            "HOOKGATE_SERVER_FORWARDED_ALLOW_IPS": "127.0.0.1",
            "HOOKGATE_LIMITS_UNKNOWN_TOKEN_PER_MINUTE": str(GUESSES),
            "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
            "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
            "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
            "HOOKGATE_DELIVERY_WORKERS": "0",
        },
        "behind-nginx",
    )
    gateway.start()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "fullchain.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp_path / "fullchain.pem"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "privkey.pem"))
    site = CONF.read_text()
    site = _replace(site, "server 127.0.0.1:8000;", f"server {gateway.base_url[7:]};")
    site = _replace(site, "listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")
    site = _replace(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = _replace(site, "/etc/ssl/hookgate/", f"{tmp_path}/")
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
master_process on;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{site}
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    with open(tmp_path / "nginx.out", "wb") as out:
        nginx = subprocess.Popen(
            [str(NGINX), "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    result = Proxy(public_url, ca, gateway)
    try:
        deadline = time.monotonic() + 10
        with result.client("127.0.0.1") as probe:
            while True:
                if nginx.poll() is not None:
                    log = (tmp_path / "nginx.out").read_text()
                    raise RuntimeError(f"nginx exited: {log[-2000:]}")
                try:
                    if probe.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not answer within 10 s")
                time.sleep(0.05)
        yield result
    finally:
        nginx.terminate()
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        gateway.stop()


def test_event_urls_are_the_proxys_and_accept_events_over_tls(proxy: Proxy) -> None:
    with proxy.client("127.0.0.2") as client:
        auth = {"authorization": f"Bearer {harness.ADMIN_TOKEN}"}
        created = client.post("/v1/apps", json={"name": "via-nginx"}, headers=auth)
        assert created.status_code == 201, created.text
        body = created.json()
        harness.track_secret(body["token"])
        assert body["event_url"] == f"{proxy.url}/api/event/{body['token']}"
        accepted = client.post(body["event_url"], json={"event_type": "ping"})
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]
        stored = client.get(f"/v1/events/{event_id}", headers=auth)
        assert stored.status_code == 200
        assert stored.json()["event_type"] == "ping"


def test_the_guard_sees_each_client_address_through_the_proxy(proxy: Proxy) -> None:
    guesser, bystander = proxy.client("127.0.0.3"), proxy.client("127.0.0.4")
    with guesser, bystander:
        statuses = [
            guesser.post(f"/api/event/guess-{n}", json={}).status_code for n in range(GUESSES + 1)
        ]
        assert statuses == [404] * GUESSES + [429]
        # Naming another address in X-Forwarded-For does not lift the block: nginx appends
        # the real peer and the gateway reads from the right.
        spoofed = guesser.post(
            "/api/event/guess-spoofed", json={}, headers={"x-forwarded-for": "127.0.0.9"}
        )
        assert spoofed.status_code == 429
        # Another client behind the same proxy is not blocked: the gateway did not see
        # every request as coming from nginx's 127.0.0.1.
        assert bystander.post("/api/event/not-a-guess", json={}).status_code == 404
        # nor was the address the guesser named blocked in its place
        with proxy.client("127.0.0.9") as named:
            assert named.post("/api/event/innocent", json={}).status_code == 404
