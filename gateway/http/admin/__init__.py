"""Admin API routes (`/v1`, bearer token), one module per resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from gateway.runtime import Gateway


def gateway_of(request: Request) -> Gateway:
    """The `Gateway` behind this request's app."""
    gateway: Gateway = request.app.state.gateway
    return gateway
