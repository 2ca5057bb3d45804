"""The console's Starlette app: session guard, security headers, static files, templates.

Mounted at `/console` by the app factory. One guard wraps every console response: it sets
`Cache-Control: no-store` and `Content-Security-Policy: default-src 'self'`, sends a request
without a valid session to the sign-in page, and refuses a state-changing request whose
CSRF token does not belong to the session (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Receive, Scope, Send

from gateway.http.console.session import COOKIE, SessionSigner, load_key
from gateway.limits.guard import GuessGuard
from gateway.runtime import Gateway

if TYPE_CHECKING:
    from gateway.http.console.overview import Sampler

PUBLIC = ("/sign-in", "/static/")
HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class ConsoleGuard:
    """ASGI middleware over the whole console (see the module docstring)."""

    def __init__(self, app: Starlette, signer: SessionSigner) -> None:
        self.app = app
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope, receive)
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        session = self.signer.read(request.cookies.get(COOKIE))
        scope.setdefault("state", {})["console_session"] = session
        if session is None and not path.startswith(PUBLIC):
            response: Response = RedirectResponse("/console/sign-in", status_code=303)
            await response(scope, receive, send_secured)
            return
        if session is not None and scope["method"] not in ("GET", "HEAD"):
            supplied = request.headers.get("x-csrf-token")
            if supplied is None:
                form = await request.form()
                value = form.get("csrf")
                supplied = value if isinstance(value, str) else None
                scope["state"]["console_form"] = form
            if not self.signer.csrf_ok(session, supplied):
                response = HTMLResponse(
                    "<h1>403</h1><p>This form is stale or did not come from the console: "
                    "reload the page and try again.</p>",
                    status_code=403,
                )
                await response(scope, receive, send_secured)
                return
        await self.app(scope, receive, send_secured)


@dataclass(frozen=True, slots=True)
class Console:
    """The mount to route and the sampler the app factory's lifespan starts and stops."""

    mount: Mount
    sampler: Sampler


def build_console(gateway: Gateway, admin_token: str) -> Console:
    """The `/console` mount for one gateway."""
    from gateway.http.console import overview, pages, setup

    settings = gateway.settings
    signer = SessionSigner(load_key(settings.data_dir))
    templates = Jinja2Templates(directory=str(files("gateway.http.console") / "templates"))
    static = StaticFiles(directory=str(files("gateway.http.console") / "static"))
    app = Starlette(
        routes=[
            *overview.routes,
            *pages.routes,
            *setup.routes,
            Mount("/static", static, name="static"),
        ]
    )
    app.state.gateway = gateway
    app.state.templates = templates
    app.state.signer = signer
    app.state.admin_token_bytes = admin_token.encode()
    app.state.secure_cookie = settings.base_url.startswith("https://")
    app.state.sign_in_guard = GuessGuard(settings.limits.unknown_token_per_minute)
    app.state.sampler = overview.Sampler(gateway)
    return Console(Mount("/console", app=ConsoleGuard(app, signer)), app.state.sampler)
