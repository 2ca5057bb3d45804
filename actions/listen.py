"""`hookgate listen`: a local sink that prints every webhook it receives.

For operators wiring up a rule or target: point it at `http://127.0.0.1:PORT/anything`, fire an
event, and see the request as the receiver will, with whether its signature verifies under the
secret given. It answers every request with a fixed status so retry behaviour can be watched.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actions.errors import ActionError, SignatureError
from actions.signing import Verifier

SHOWN_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-webhook-signature",
)
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_BODYLESS_STATUSES = frozenset({204, 205, 304})

# Control characters (but tab and newline) are shown escaped: a request must not be able to
# move the cursor or recolour the terminal, e.g. to print a fake "signature: valid" line.
_ESCAPE_CONTROLS = {
    code: f"\\x{code:02x}"
    for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))
    if chr(code) not in "\t\n"
}


def _printable(text: str) -> str:
    return text.translate(_ESCAPE_CONTROLS)


def _render_body(body: bytes) -> str:
    if not body:
        return "(empty body)"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _printable(body.decode("utf-8", errors="replace"))
    return _printable(orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode("utf-8"))


def build_listen_app(
    *, secret: str | None, status: int, out: TextIO, all_headers: bool = False
) -> Starlette:
    """An app that prints each request to `out` and answers `status` with `{"ok": true}`.

    It prints the `SHOWN_HEADERS` a webhook carries, or with `all_headers` every header in
    the order received (a rule's own headers, such as `X-Api-Key`, included).

    Raises `ActionError` for a malformed secret or a status outside 200-599, before
    anything listens.
    """
    if not 200 <= status <= 599:
        raise ActionError(f"status must be between 200 and 599, got {status}")
    verifier = Verifier(secret) if secret is not None else None

    async def receive(request: Request) -> Response:
        body = await request.body()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        lines = [_printable(f"{request.method} {target}")]
        if all_headers:
            for name, given in request.headers.items():
                lines.append(_printable(f"  {name}: {given}"))
        else:
            for name in SHOWN_HEADERS:
                value = request.headers.get(name)
                if value is not None:
                    lines.append(_printable(f"  {name}: {value}"))
        if verifier is not None:
            try:
                verifier.verify(request.headers, body, now=time.time())
            except SignatureError as exc:
                lines.append(f"  signature: INVALID ({exc.reason})")
            else:
                lines.append("  signature: valid")
        lines.append(_render_body(body))
        # One write per request, so concurrent requests never interleave their lines.
        out.write("\n".join(lines) + "\n\n")
        out.flush()
        if status in _BODYLESS_STATUSES:
            return Response(status_code=status)
        return JSONResponse({"ok": True}, status_code=status)

    return Starlette(routes=[Route("/{path:path}", receive, methods=_METHODS)])


def run_listen(
    port: int,
    *,
    host: str = "127.0.0.1",
    secret: str | None = None,
    status: int = 200,
    all_headers: bool = False,
) -> None:
    """Serve the sink in the foreground until interrupted (Ctrl-C)."""
    app = build_listen_app(secret=secret, status=status, out=sys.stdout, all_headers=all_headers)
    shown_host = f"[{host}]" if ":" in host else host
    check = "signatures checked" if secret is not None else "no secret: signatures not checked"
    print(f"listening on http://{shown_host}:{port}/ (any path), answering {status}; {check}")
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", ws="none"
    )
    uvicorn.Server(config).run()
