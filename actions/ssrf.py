"""SSRF guard: refuse target URLs that would make the gateway call into its own network.

Checked when a target or rule is created (`check_url`, with DNS), and on every send by the
connection itself: `actions.resolver.GuardedResolver` is the HTTP client's resolver, so the
socket goes only to addresses this module accepted, from the one lookup that was checked
(no DNS rebinding window between a check and a second lookup). IP literals never reach a
resolver, so the dispatcher checks them before sending (`check_target`, no DNS).

`AddressPolicy` says what is allowed: public addresses always; private ones inside
`delivery.allowed_networks` (an internal CRM on 10.1.2.0/24); everything with
`allow_private_targets`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx

from actions.errors import UnsafeTargetError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Shaped like `asyncio.AbstractEventLoop.getaddrinfo(host, port)`: addrinfo tuples whose
# fifth item is the socket address, address string first.
Resolver = Callable[[str, int], Awaitable[Sequence[tuple[Any, ...]]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services hand out cloud credentials. Most already sit in refused ranges
# (link-local, ULA, CGNAT); Azure's wire server is a public address and is named here.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, Oracle
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
    )
)
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Numbers-and-dots forms that inet_aton (and so getaddrinfo) reads as IPv4 without any DNS:
# "127.1", "0x7f.0.0.1", "2130706433". They are checked as literals, like dotted quads.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)


def _parse(url: str) -> tuple[str, int]:
    """The host (ASCII, as the client will resolve it) and port of `url`, or a refusal."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTargetError(f"invalid URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        shown = parsed.scheme or "(none)"
        raise UnsafeTargetError(f"URL scheme {shown} is not allowed: use http or https")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise UnsafeTargetError("URL has no host")
    if parsed.userinfo:
        raise UnsafeTargetError("URL must not carry credentials (user:password@)")
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[parsed.scheme]
    if not 1 <= port <= 65535:
        raise UnsafeTargetError(f"port {port} is out of range 1-65535")
    return host, port


def check_url_syntax(url: str) -> None:
    """Refuse a URL that is not absolute http(s) with a host, no credentials and a valid port."""
    _parse(url)


def _ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells as an IP literal, or None when it is a name to resolve."""
    # IPv6 zone ids arrive percent-encoded from the URL ("fe80::1%25eth0").
    candidate = unquote(host) if ":" in host else host
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _classify(address: IPAddress) -> str | None:
    """Why `address` is refused, as a noun phrase ("a private address"), or None if public."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED_CGNAT:
        return "a shared (CGNAT) address"
    if address.is_private:
        return "a private address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries and routes to, with the form's name."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why the guard refuses to connect to `address`, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # Checked before the IPv6 ranges: the mapped block is "private" to ipaddress, which
        # would refuse every public IPv4 address written in mapped form.
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, ipv4 = embedded
            reason = _classify(ipv4)
            return None if reason is None else f"{reason} ({form} {ipv4})"
    return _classify(address)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses the gateway may connect to: public ones, those in `allowed_networks`
    although private, or any with `allow_private` (tests, local development)."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(cls, allow_private: bool, networks: Iterable[str] = ()) -> AddressPolicy:
        """A policy from config values; a malformed CIDR raises `ValueError`."""
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused under this policy, or None when it may be connected to."""
        if self.allow_private:
            return None
        reason = refusal_reason(address)
        if reason is None or self._allowed(address):
            return None
        return reason

    def _allowed(self, address: IPAddress) -> bool:
        if not self.allowed_networks:
            return False
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                candidates.append(embedded[1])
        return any(a in net for a in candidates for net in self.allowed_networks)


def check_target(url: str, policy: AddressPolicy) -> str:
    """Refuse `url` if its syntax is bad or its host is an IP literal the policy refuses;
    returns the host. No DNS: names are checked by the connection's resolver."""
    host, _ = _parse(url)
    if policy.allow_private:
        return host
    literal = _ip_literal(host)
    if literal is not None:
        reason = policy.refusal(literal)
        if reason is not None:
            raise UnsafeTargetError(f"host {host} is {reason}")
    return host


async def check_url(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    allowed_networks: Sequence[IPNetwork] = (),
) -> None:
    """Refuse `url` unless it is http(s) and every address its host resolves to is allowed
    (public, or inside `allowed_networks`).

    IP literals are judged without DNS. With `allow_private` (tests, local development) only
    the syntax is checked. `resolver` defaults to the running loop's `getaddrinfo`.
    """
    policy = AddressPolicy(allow_private, tuple(allowed_networks))
    host, port = _parse(url)
    if allow_private:
        return
    literal = _ip_literal(host)
    if literal is not None:
        reason = policy.refusal(literal)
        if reason is not None:
            raise UnsafeTargetError(f"host {host} is {reason}")
        return
    if resolver is None:
        resolver = asyncio.get_running_loop().getaddrinfo
    try:
        infos = await resolver(host, port)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise UnsafeTargetError(f"cannot resolve host {host}") from exc
    if not infos:
        raise UnsafeTargetError(f"cannot resolve host {host}")
    for info in infos:
        text = str(info[4][0])
        address = _ip_literal(text)
        if address is None:
            raise UnsafeTargetError(f"host {host} resolves to {text}, not an IP address")
        reason = policy.refusal(address)
        if reason is not None:
            raise UnsafeTargetError(f"host {host} resolves to {address}, {reason}")
