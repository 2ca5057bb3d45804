"""The outbound HTTP client of one process: one `aiohttp.ClientSession`, built on first use.

aiohttp does the HTTP; this module is the seam that sets it up for deliveries. Measured on
loopback (bench/transport_micro.py, 2 000 POSTs at concurrency 8), aiohttp costs a fraction
of the CPU per request of httpx's default transport, and sending is the dominant cost of a
delivery. Connection limits and the timeout come from `delivery.*`; redirects are never
followed (the sender passes `allow_redirects=False`); proxies and cookies from the
environment or from receivers are ignored; idle keep-alive connections are dropped after
`keepalive_seconds`, below typical server idle timeouts (5 s for uvicorn, nginx's default
is 75 s, Node's 5 s), so a reused connection is rarely closed under a request. aiohttp
never re-sends a POST by itself, so when that happens anyway it is one failed attempt under
the retry policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver

from actions.resolver import GuardedResolver
from actions.ssrf import AddressPolicy

KEEPALIVE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    concurrency: int = 64
    per_host_concurrency: int = 8
    timeout_seconds: float = 15.0
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    keepalive_seconds: float = KEEPALIVE_SECONDS


class DeliveryClient:
    """Owns the process's session; the session is made inside the running loop on first
    use (aiohttp binds it to that loop), so this object can be built anywhere."""

    def __init__(
        self, settings: ClientSettings | None = None, *, resolver: AbstractResolver | None = None
    ) -> None:
        self.settings = settings if settings is not None else ClientSettings()
        self._base_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    @property
    def policy(self) -> AddressPolicy:
        return self.settings.policy

    def session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            settings = self.settings
            connector = aiohttp.TCPConnector(
                limit=settings.concurrency,
                limit_per_host=settings.per_host_concurrency,
                keepalive_timeout=settings.keepalive_seconds,
                resolver=GuardedResolver(settings.policy, self._base_resolver),
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds),
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
