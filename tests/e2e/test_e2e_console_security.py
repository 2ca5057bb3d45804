"""Console security over real HTTP: session cookie flags, CSRF, redirects, headers, the
sign-in rate limit, and no admin token in any page."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextlib.contextmanager
def signed_in(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        response = client.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN})
        assert response.status_code == 303, response.text
        yield client


@contextlib.contextmanager
def anonymous(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        yield client


def test_sign_in_sets_strict_httponly_cookie_and_pages_need_it(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, limits={"unknown_token_per_minute": 3})
    with harness.running_gateway(settings) as gw:
        with anonymous(gw.base_url) as anon:
            for path in (
                "/console/",
                "/console/events",
                "/console/deliveries",
                "/console/events/x",
            ):
                response = anon.get(path)
                assert response.status_code == 303, path
                assert response.headers["location"] == "/console/sign-in"
                assert response.headers["cache-control"] == "no-store"
                assert response.headers["content-security-policy"] == "default-src 'self'"
            response = anon.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN})
            assert response.status_code == 303
            cookie = response.headers["set-cookie"].lower()
            assert "httponly" in cookie
            assert "samesite=strict" in cookie
            assert "secure" not in cookie  # public_url is http
            assert (tmp_path / "data" / "console_session_key").exists()
        with signed_in(gw.base_url) as client:
            page = client.get("/console/events")
            assert page.status_code == 200
            assert page.headers["cache-control"] == "no-store"
            assert page.headers["content-security-policy"] == "default-src 'self'"
            assert "No events yet" in page.text
            assert harness.ADMIN_TOKEN not in page.text
            assert harness.ADMIN_TOKEN not in client.get("/console/deliveries").text
            # Sign-out drops the session.
            csrf = CSRF.search(page.text)
            assert csrf is not None
            out = client.post("/console/sign-out", data={"csrf": csrf.group(1)})
            assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
            assert client.get("/console/events").status_code == 303


def test_cookie_is_secure_when_public_url_is_https(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, server={"public_url": "https://hooks.example"})
    with harness.running_gateway(settings) as gw:
        response = gw.public.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN})
        assert "secure" in response.headers["set-cookie"].lower()


def test_post_without_csrf_token_is_refused(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path)
    with harness.running_gateway(settings) as gw, signed_in(gw.base_url) as client:
        assert client.post("/console/sign-out").status_code == 403
        assert client.post("/console/sign-out", data={"csrf": "forged"}).status_code == 403
        forged = client.post(
            "/console/deliveries/recover", data={"since": "0"}, headers={"x-csrf-token": "x"}
        )
        assert forged.status_code == 403
        # Still signed in: the refused sign-out did nothing.
        assert client.get("/console/events").status_code == 200


def test_wrong_token_cannot_sign_in_and_is_rate_limited(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, limits={"unknown_token_per_minute": 3})
    with harness.running_gateway(settings) as gw, anonymous(gw.base_url) as client:
        statuses = [
            client.post("/console/sign-in", data={"token": f"wrong-{i}"}).status_code
            for i in range(5)
        ]
        assert statuses[:3] == [401, 401, 401]
        assert statuses[3:] == [429, 429]
        assert "set-cookie" not in client.post("/console/sign-in", data={"token": "x"}).headers
        # Blocked: even the right token is refused until the window passes.
        right = client.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN})
        assert right.status_code == 429
        assert "set-cookie" not in right.headers


def test_console_can_be_switched_off(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, console={"enabled": False})
    with harness.running_gateway(settings) as gw:
        assert gw.public.get("/console/sign-in").status_code == 404


def test_forged_cookie_is_no_session(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path)
    with harness.running_gateway(settings) as gw, anonymous(gw.base_url) as client:
        client.cookies.set("hookgate_console", "abc.9999999999.forged", path="/console")
        assert client.get("/console/events").status_code == 303
