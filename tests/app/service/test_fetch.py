"""Tag-by-URL downloads: the SSRF rules, redirects, byte caps and timeouts, against real
loopback servers. Listeners that count connections prove refused URLs are never contacted."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from app.service.fetch import Fetcher, FetchPolicy, IPAddress, is_public_address
from app.service.problems import (
    BAD_REQUEST,
    FETCH_FAILED,
    FETCH_TIMEOUT,
    FORBIDDEN_URL,
    REMOTE_TOO_LARGE,
    UNSUPPORTED_MEDIA,
    ProblemError,
)
from app.service.settings import Settings
from tests.app.audio import encode
from tests.app.servers import FileServer, Route, accept_counter

UNUSED = Path("unused.safetensors")  # fetching needs no model
LOOPBACK_ONLY = [ipaddress.ip_network("127.0.0.1/32")]


def fetcher(**overrides: Any) -> Fetcher:
    """A fetcher with the default (strict) policy except for `overrides`."""
    return Fetcher(Settings(checkpoint=UNUSED, **overrides))


async def refused(fetch: Fetcher, url: str) -> ProblemError:
    with pytest.raises(ProblemError) as error:
        await fetch.fetch(url)
    return error.value


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT: neither private nor global
        ("0.0.0.0", False),
        ("192.0.0.8", False),  # special-purpose; Python 3.11.7 calls it global
        ("198.18.0.1", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1; Python 3.11.7 calls it global
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("::127.0.0.1", False),  # deprecated IPv4-compatible
        ("2001:db8::1", False),
    ],
)
def test_only_globally_routable_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_policy_opt_ins() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    assert not FetchPolicy().allows(loopback)
    assert FetchPolicy(allow_private=True).allows(loopback)
    narrow = FetchPolicy(allowed_networks=tuple(LOOPBACK_ONLY))
    assert narrow.allows(loopback)
    assert narrow.allows(ipaddress.ip_address("::ffff:127.0.0.1"))  # mapped form unwrapped
    assert not narrow.allows(ipaddress.ip_address("127.0.0.2"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "kind", "words"),
    [
        ("ftp://example.org/a.mp3", FORBIDDEN_URL, "only http and https"),
        ("file:///etc/passwd", FORBIDDEN_URL, "only http and https"),
        ("http://user:secret@example.org/a.mp3", FORBIDDEN_URL, "credentials"),
        ("http://example.org:8080/a.mp3", FORBIDDEN_URL, "port 8080"),
        ("http:///a.mp3", BAD_REQUEST, "no host"),
        ("http://exa mple.org/", BAD_REQUEST, "not a valid host name"),
        ("http://[::1/", BAD_REQUEST, "not a valid URL"),
    ],
)
async def test_malformed_or_disallowed_urls_are_refused_before_resolving(
    url: str, kind: Any, words: str
) -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        raise AssertionError(f"{host} should not have been resolved")

    fetch = Fetcher(Settings(checkpoint=UNUSED), resolver=resolver)
    problem = await refused(fetch, url)
    assert problem.kind is kind
    assert words in problem.detail
    await fetch.aclose()


@pytest.mark.anyio
async def test_private_hosts_are_refused_and_never_connected_to() -> None:
    fetch = fetcher(fetch_allowed_ports=[])  # only the address rule is in play
    with accept_counter("127.0.0.1") as v4, accept_counter("::1") as v6:
        for url in (
            f"http://127.0.0.1:{v4.port}/a.mp3",
            f"http://localhost:{v4.port}/a.mp3",
            f"http://[::ffff:127.0.0.1]:{v4.port}/a.mp3",
            f"http://2130706433:{v4.port}/a.mp3",  # 127.0.0.1 as one decimal number
            f"http://[::1]:{v6.port}/a.mp3",
        ):
            problem = await refused(fetch, url)
            assert problem.kind is FORBIDDEN_URL, url
            assert "non-public" in problem.detail
        await asyncio.sleep(0.3)  # give a stray connection time to arrive
        assert v4.accepted == 0
        assert v6.accepted == 0
    await fetch.aclose()


@pytest.mark.anyio
async def test_every_resolved_address_must_be_allowed() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.1")]

    settings = Settings(
        checkpoint=UNUSED,
        fetch_allowed_networks=LOOPBACK_ONLY,
        fetch_allowed_ports=[],
    )
    fetch = Fetcher(settings, resolver=resolver)
    with accept_counter() as listener:
        problem = await refused(fetch, f"http://music.test:{listener.port}/a.mp3")
        await asyncio.sleep(0.3)
        assert problem.kind is FORBIDDEN_URL
        assert listener.accepted == 0
    await fetch.aclose()


@pytest.mark.anyio
async def test_the_connection_goes_to_the_validated_address(file_server: FileServer) -> None:
    # `music.test` cannot resolve through DNS (.test is reserved), so a successful download
    # proves the client connected to the address the resolver returned, with the original Host.
    audio = encode("mp3", 1.0)
    file_server.routes["/song.mp3"] = Route(audio, headers={"Content-Type": "audio/mpeg"})
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    settings = Settings(
        checkpoint=UNUSED,
        fetch_allowed_networks=LOOPBACK_ONLY,
        fetch_allowed_ports=[],
    )
    fetch = Fetcher(settings, resolver=resolver)
    fetched = await fetch.fetch(f"http://music.test:{file_server.port}/song.mp3?token=1")
    await fetch.aclose()
    assert fetched.data == audio
    assert fetched.redirects == 0
    assert lookups == ["music.test"]
    [seen] = file_server.requests
    assert seen.headers["Host"] == f"music.test:{file_server.port}"
    assert seen.headers["Accept-Encoding"] == "identity"


@pytest.mark.anyio
async def test_redirects_are_followed_and_each_hop_is_validated(file_server: FileServer) -> None:
    audio = encode("wav", 0.5)
    file_server.routes["/a"] = Route(status=301, headers={"Location": "/b"})
    file_server.routes["/b"] = Route(status=307, headers={"Location": f"{file_server.base}/c"})
    file_server.routes["/c"] = Route(audio)
    fetch = fetcher(fetch_allowed_networks=LOOPBACK_ONLY, fetch_allowed_ports=[])
    fetched = await fetch.fetch(f"{file_server.base}/a")
    assert fetched.data == audio
    assert fetched.redirects == 2
    assert fetched.url == f"{file_server.base}/c"

    # A redirect to an address outside the policy is refused before connecting to it.
    with accept_counter("127.0.0.2") as private:
        target = f"http://127.0.0.2:{private.port}/a.mp3"
        file_server.routes["/away"] = Route(status=302, headers={"Location": target})
        problem = await refused(fetch, f"{file_server.base}/away")
        await asyncio.sleep(0.3)
        assert problem.kind is FORBIDDEN_URL
        assert private.accepted == 0
    await fetch.aclose()


@pytest.mark.anyio
async def test_at_most_three_redirects(file_server: FileServer) -> None:
    file_server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    fetch = fetcher(allow_private_addresses=True, fetch_allowed_ports=[])
    problem = await refused(fetch, f"{file_server.base}/loop")
    await fetch.aclose()
    assert problem.kind is FETCH_FAILED
    assert "more than 3 redirects" in problem.detail
    assert len(file_server.requests) == 4  # the URL and three redirects, not one more


@pytest.mark.anyio
async def test_remote_errors_sizes_types_and_timeouts(file_server: FileServer) -> None:
    big = encode("wav", 1.0) + bytes(200_000)
    file_server.routes["/big"] = Route(big)
    file_server.routes["/big-unannounced"] = Route(big, content_length=False)
    file_server.routes["/page.html"] = Route(b"<!doctype html><html>" + bytes(100_000))
    file_server.routes["/slow"] = Route(encode("wav", 0.5), delay=3.0)
    file_server.routes["/empty"] = Route(b"")
    fetch = fetcher(
        allow_private_addresses=True,
        fetch_allowed_ports=[],
        max_fetch_bytes=150_000,
        fetch_timeout_s=0.5,
    )
    cases = {
        "/missing": (FETCH_FAILED, "HTTP 404"),
        "/big": (REMOTE_TOO_LARGE, "larger than the limit of 0.15 MB"),
        "/big-unannounced": (REMOTE_TOO_LARGE, "larger than the limit"),
        "/page.html": (UNSUPPORTED_MEDIA, "not an audio file"),
        "/slow": (FETCH_TIMEOUT, "longer than 0.5 s"),
    }
    for path, (kind, words) in cases.items():
        problem = await refused(fetch, file_server.base + path)
        assert problem.kind is kind, path
        assert words in problem.detail, path
    # An empty body is not the fetcher's call: the tagging service answers it (422).
    assert (await fetch.fetch(file_server.base + "/empty")).data == b""
    await fetch.aclose()


@pytest.mark.anyio
async def test_unresolvable_hosts_fail_as_fetch_errors() -> None:
    fetch = fetcher()
    problem = await refused(fetch, "http://no-such-host.invalid/a.mp3")
    await fetch.aclose()
    assert problem.kind is FETCH_FAILED
    assert "could not resolve" in problem.detail


@pytest.mark.anyio
async def test_concurrent_downloads_are_bounded(file_server: FileServer) -> None:
    file_server.routes["/song.wav"] = Route(encode("wav", 0.5), delay=0.2)
    fetch = fetcher(allow_private_addresses=True, fetch_allowed_ports=[], max_concurrent_fetches=2)
    await asyncio.gather(*(fetch.fetch(f"{file_server.base}/song.wav") for _ in range(5)))
    await fetch.aclose()
    assert len(file_server.requests) == 5
    assert file_server.max_active == 2
