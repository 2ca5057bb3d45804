"""SSRF guard: URL syntax, IP literals judged without DNS, and names judged by what they resolve
to. Names other than `localhost` go through an injected fake resolver: no DNS traffic."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import pytest

from actions.errors import UnsafeTargetError
from actions.ssrf import check_url, check_url_syntax


def fake_resolver(table: dict[str, list[str]]) -> Any:
    """A getaddrinfo stand-in answering from `table`; unknown names fail like a real lookup."""
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[tuple[Any, ...]]:
        calls.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port),
            )
            for address in table[host]
        ]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def no_dns(host: str, port: int) -> Sequence[tuple[Any, ...]]:
    raise AssertionError(f"IP literal {host} must be judged without DNS")


# --- syntax -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://example.com/hook", "https://example.com:8443/a?b=c", "HTTPS://EXAMPLE.COM"],
)
def test_well_formed_http_urls_pass_the_syntax_check(url: str) -> None:
    check_url_syntax(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "scheme ftp is not allowed"),
        ("file:///etc/passwd", "scheme file is not allowed"),
        ("gopher://example.com/", "scheme gopher is not allowed"),
        ("example.com/hook", "scheme (none) is not allowed"),
        ("http:///path-only", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://example.com\\@127.0.0.1/", "credentials"),
        ("http://example.com:0/", "port 0 is out of range"),
        ("http://example.com:99999/", "port 99999 is out of range"),
        ("http://example.com:abc/", "invalid URL"),
    ],
)
async def test_malformed_urls_are_refused_even_when_private_targets_are_allowed(
    url: str, reason: str
) -> None:
    with pytest.raises(UnsafeTargetError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_url_syntax(url)
    with pytest.raises(UnsafeTargetError):
        await check_url(url, allow_private=True, resolver=no_dns)


# --- IP literals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "host 127.0.0.1 is a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("10.0.0.1", "host 10.0.0.1 is a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "host 169.254.169.254 is a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("100.64.0.1", "a shared \\(CGNAT\\) address"),
        ("0.0.0.0", "the unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a private address|a reserved address"),
        ("192.0.2.10", "not a public address|a private address"),
        ("[::1]", "host ::1 is a loopback address"),
        ("[::]", "the unspecified address"),
        ("[fe80::1]", "a link-local address"),
        ("[fe80::1%25eth0]", "a link-local address"),
        ("[fc00::1]", "a private address"),
        ("[fd00:ec2::254]", "a cloud metadata address"),
        ("[ff02::1]", "a multicast address"),
        ("[fec0::1]", "a site-local address"),
        ("[::ffff:127.0.0.1]", "host ::ffff:127.0.0.1 is a loopback address \\(IPv4-mapped"),
        ("[::ffff:7f00:1]", "a loopback address \\(IPv4-mapped 127.0.0.1\\)"),
        ("[::ffff:10.0.0.1]", "a private address \\(IPv4-mapped 10.0.0.1\\)"),
        ("[::ffff:169.254.169.254]", "a cloud metadata address"),
        ("[2002:7f00:1::]", "a loopback address \\(6to4 127.0.0.1\\)"),
        ("[64:ff9b::a00:1]", "a private address \\(NAT64 10.0.0.1\\)"),
        ("2130706433", "a loopback address"),
        ("0x7f.1", "a loopback address"),
        ("127.1", "a loopback address"),
        ("012.0.0.1", "invalid URL"),  # octal: httpx itself refuses it
    ],
)
async def test_non_public_ip_literals_are_refused_without_dns(host: str, reason: str) -> None:
    with pytest.raises(UnsafeTargetError, match=reason):
        await check_url(f"http://{host}/hook", allow_private=False, resolver=no_dns)


@pytest.mark.parametrize(
    "host",
    ["93.184.216.34", "[2606:2800:220:1:248:1893:25c8:1946]", "[::ffff:93.184.216.34]", "8.8.8.8"],
)
async def test_public_ip_literals_are_allowed_without_dns(host: str) -> None:
    await check_url(f"https://{host}:8443/hook", allow_private=False, resolver=no_dns)


async def test_private_literals_pass_when_private_targets_are_allowed() -> None:
    await check_url("http://127.0.0.1:9000/hook", allow_private=True, resolver=no_dns)
    await check_url("http://169.254.169.254/", allow_private=True, resolver=no_dns)


# --- names ------------------------------------------------------------------------------------


async def test_localhost_is_refused_as_loopback_by_the_real_resolver() -> None:
    with pytest.raises(UnsafeTargetError, match=r"host localhost resolves to .*loopback"):
        await check_url("http://localhost:8000/hook", allow_private=False)


async def test_name_resolving_to_public_addresses_is_allowed() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    await check_url("https://hooks.example.com/in", allow_private=False, resolver=resolver)
    assert resolver.calls == [("hooks.example.com", 443)]


async def test_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = fake_resolver({"internal.example.com": ["10.1.2.3"]})
    with pytest.raises(UnsafeTargetError) as caught:
        await check_url("http://internal.example.com/", allow_private=False, resolver=resolver)
    assert caught.value.reason == (
        "host internal.example.com resolves to 10.1.2.3, a private address"
    )


async def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolver = fake_resolver({"mixed.example.com": ["93.184.216.34", "::ffff:169.254.169.254"]})
    with pytest.raises(UnsafeTargetError, match="cloud metadata"):
        await check_url("http://mixed.example.com:81/", allow_private=False, resolver=resolver)
    assert resolver.calls == [("mixed.example.com", 81)]


async def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeTargetError, match=r"cannot resolve host nowhere\.invalid"):
        await check_url("http://nowhere.invalid/", allow_private=False, resolver=fake_resolver({}))


async def test_empty_resolution_is_refused() -> None:
    resolver = fake_resolver({"empty.example.com": []})
    with pytest.raises(UnsafeTargetError, match="cannot resolve host"):
        await check_url("http://empty.example.com/", allow_private=False, resolver=resolver)


async def test_idn_hosts_are_resolved_in_their_ascii_form() -> None:
    resolver = fake_resolver({"xn--bcher-kva.example": ["93.184.216.34"]})
    await check_url("https://bücher.example/", allow_private=False, resolver=resolver)
    assert resolver.calls == [("xn--bcher-kva.example", 443)]


async def test_names_are_not_resolved_when_private_targets_are_allowed() -> None:
    resolver = fake_resolver({})
    await check_url("http://sink.internal:9000/", allow_private=True, resolver=resolver)
    assert resolver.calls == []
