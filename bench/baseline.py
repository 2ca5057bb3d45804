"""The baseline for `make bench`: a minimal Starlette app doing the least an ingest endpoint
can do (read the body, parse it with orjson, check it is an object, answer 202 JSON).

hookgate's ingest figures are quoted as ratios against this app, run in the same
invocation under the same uvicorn settings, so machine noise cancels out.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def ingest(request: Request) -> Response:
    body = await request.body()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Response(b'{"error":"invalid_json"}', status_code=400, media_type="application/json")
    if not isinstance(payload, dict):
        return Response(
            b'{"error":"invalid_event"}', status_code=400, media_type="application/json"
        )
    return Response(b'{"accepted":true}', status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/api/event/{token}", ingest, methods=["POST"])])
