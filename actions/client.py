"""The outbound HTTP client of one process: one `aiohttp.ClientSession`, built on first use.

aiohttp does the HTTP; this module is the seam that sets it up for deliveries. Measured on
loopback (bench/transport_micro.py, 2 000 POSTs at concurrency 8), aiohttp costs a fraction
of the CPU per request of httpx's default transport, and sending is the dominant cost of a
delivery. Connection limits come from `delivery.*` and the sender bounds each attempt by its
timeout; redirects are never
followed (the sender passes `allow_redirects=False`); proxies and cookies from the
environment or from receivers are ignored; idle keep-alive connections are dropped after
`keepalive_seconds`, below typical server idle timeouts (5 s for uvicorn, nginx's default
is 75 s, Node's 5 s), so a reused connection is rarely closed under a request. aiohttp
never re-sends a POST by itself, so when that happens anyway it is one failed attempt under
the retry policy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from actions.errors import UnsafeTargetError
from actions.resolver import GuardedResolver
from actions.ssrf import AddressPolicy, check_target

KEEPALIVE_SECONDS = 3.0
NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
# Parsed and checked target URLs kept per process. A worker sends to few distinct URLs, and
# parsing one (for the guard, then for aiohttp) cost ~7% of a worker's CPU per delivery
# (py-spy, bench drain); the cache is cleared whole when full, so it stays bounded.
_URL_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Connection limits, SSRF policy and keep-alive of the session. No timeout here: each
    attempt is bounded by its delivery's own timeout in the sender."""

    concurrency: int = 64
    per_host_concurrency: int = 8
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
        self._targets: dict[str, URL | UnsafeTargetError] = {}

    @property
    def policy(self) -> AddressPolicy:
        return self.settings.policy

    def target(self, url: str) -> URL:
        """`url` parsed as aiohttp will use it, after the guard's literal and syntax check
        (`actions.ssrf.check_target`); raises `UnsafeTargetError` or `ValueError`. Names
        are checked later, by the resolver, on the lookup the connection makes."""
        found = self._targets.get(url)
        if found is None:
            try:
                check_target(url, self.settings.policy)
                found = URL(url, encoded=False)
                self._check_literal(found)
            except UnsafeTargetError as exc:
                found = exc
            except ValueError as exc:  # yarl: a URL httpx's parser took but aiohttp's refuses
                found = UnsafeTargetError(f"invalid URL: {exc}")
            if len(self._targets) >= _URL_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = found
        if isinstance(found, UnsafeTargetError):
            raise UnsafeTargetError(found.reason)
        return found

    def _check_literal(self, target: URL) -> None:
        """Refuse an IP-literal host the policy refuses, on the URL as aiohttp parsed it:
        aiohttp connects to a literal without asking its resolver."""
        policy = self.settings.policy
        if policy.allow_private:
            return
        host = target.raw_host or ""
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return  # a name: the connector's resolver checks what it resolves to
        reason = policy.refusal(address)
        if reason is not None:
            raise UnsafeTargetError(f"host {host} is {reason}")

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
                # No timer of aiohttp's own: the sender bounds each attempt by its delivery's
                # timeout (one asyncio deadline over headers and excerpt), and a second timer
                # per request would only cost CPU.
                timeout=NO_TIMEOUT,
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
