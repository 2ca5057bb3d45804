"""The SSRF guard as the HTTP client's own resolver: one lookup, only checked addresses.

aiohttp's connector asks its resolver for the addresses of a host and connects to what it
gets back. `GuardedResolver` resolves once through a base resolver, drops every address the
`AddressPolicy` refuses, and hands the connector only the rest, so the socket goes to exactly
an address that was checked: a DNS answer that changes between a check and a second lookup
(rebinding) has no second lookup to exploit. When every address is refused the lookup fails
with `UnsafeTargetError`, which the sender records as the attempt's error.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from actions.errors import UnsafeTargetError
from actions.ssrf import AddressPolicy


class GuardedResolver(AbstractResolver):
    """Resolve through `base` (default: the loop's getaddrinfo in a thread) and keep only
    the addresses `policy` allows."""

    def __init__(self, policy: AddressPolicy, base: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._base = base if base is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._base.resolve(host, port, family)
        if self._policy.allow_private:
            return results
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"].partition("%")[0])
            except ValueError:
                refused.append(f"{result['host']}, not an IP address")
                continue
            reason = self._policy.refusal(address)
            if reason is None:
                kept.append(result)
            else:
                refused.append(f"{address}, {reason}")
        if not kept:
            shown = host.rstrip(".")
            if not refused:
                raise UnsafeTargetError(f"cannot resolve host {shown}")
            raise UnsafeTargetError(f"host {shown} resolves to {refused[0]}")
        return kept

    async def close(self) -> None:
        await self._base.close()
