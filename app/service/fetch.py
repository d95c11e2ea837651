"""Download audio for `POST /tag/url` without becoming a proxy into private networks (SSRF).

For every hop (the URL and each redirect, at most `max_redirects`):

1. parse: http or https only, no credentials, an allowed port;
2. resolve the host and refuse unless *every* address is allowed: globally routable
   (`is_global`, with IPv4-mapped, 6to4, Teredo and NAT64 addresses judged by the IPv4 address
   they embed, and a list of special-purpose ranges older Pythons misclassify), or explicitly
   allowed by the operator;
3. connect to an address validated in step 2: the request goes to the IP itself, with the
   original `Host` header and TLS server name, so nothing resolves the name a second time
   (DNS rebinding);
4. stream the body with a byte cap, stop early when the first bytes are not audio.

The whole download, redirects included, runs under one total timeout and a bounded number of
downloads run at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from app.service.metrics import Metrics
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
from model.audio.sniff import SNIFF_BYTES, SUPPORTED_FORMATS, sniff_audio

logger = logging.getLogger("tagger.fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_REDIRECTS = {301, 302, 303, 307, 308}
# What may stand between "//" and the port once httpx has IDNA-encoded the name: letters,
# digits, dots and hyphens, or an IPv6 literal's hex digits and colons.
_HOST = re.compile(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]+")
_USER_AGENT = "music-tagger/0.1 (+audio tagging service)"

# Special-purpose ranges (IANA registries) that are not destinations for an audio download.
# Python before 3.12.4/3.11.10 (CVE-2024-4032) calls some of them global, so list them outright.
_NOT_PUBLIC: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible addresses
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",  # Teredo, benchmarking, ORCHID...
        "2001:db8::/32",
        "2002::/16",  # 6to4
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address tunnels to (mapped, 6to4, Teredo, NAT64)."""
    embedded = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def is_public_address(address: IPAddress) -> bool:
    """Whether `address` is a globally routable unicast address (and so is all it embeds)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if not all(is_public_address(v4) for v4 in _embedded_ipv4(address)):
            return False
    if any(address in network for network in _NOT_PUBLIC if network.version == address.version):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


@dataclass(frozen=True)
class FetchPolicy:
    """Where downloads may go.

    Attributes:
        allow_private: Allow every address (for tests and trusted networks only).
        allowed_networks: Non-public networks that are allowed anyway.
        allowed_ports: Ports URLs may use; empty means any.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            allow_private=settings.allow_private_addresses,
            allowed_networks=tuple(settings.fetch_allowed_networks),
            allowed_ports=tuple(settings.fetch_allowed_ports),
        )

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if self.allow_private or is_public_address(address):
            return True
        return any(
            address in network
            for network in self.allowed_networks
            if network.version == address.version
        )


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every A and AAAA address of `host`, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class FetchedFile:
    """A downloaded file.

    Attributes:
        data: The body.
        url: The URL it finally came from (after redirects).
        redirects: How many redirects were followed.
        seconds: Download time, redirects included.
    """

    data: bytes
    url: str
    redirects: int
    seconds: float


def _describe(url: httpx.URL) -> str:
    """A URL for messages: scheme, host and path only (no query strings with tokens)."""
    return f"{url.scheme}://{url.host}{url.path}"


class Fetcher:
    """Downloads audio files by URL under the SSRF rules above.

    Args:
        settings: Limits and the address policy.
        resolver: Name resolution; tests inject one to prove the connection goes to the
            address it returned rather than to a second lookup.
        metrics: Records download durations by outcome.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.policy = FetchPolicy.from_settings(settings)
        self.max_bytes = settings.max_fetch_bytes
        self.max_redirects = settings.max_redirects
        self.timeout_s = settings.fetch_timeout_s
        self._resolve = resolver or system_resolver
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.max_concurrent_fetches)
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            # Never route through proxies from the environment: the pinned address must be the
            # one connected to.
            trust_env=False,
            timeout=httpx.Timeout(
                settings.fetch_timeout_s, connect=settings.fetch_connect_timeout_s
            ),
            # No connection reuse: the pool is keyed by IP, and a TLS connection opened for one
            # host name must not carry a request for another name on the same address.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> FetchedFile:
        """Download `url`; raises ProblemError (400, 413, 415, 502, 504) on any failure."""
        started = time.monotonic()
        outcome = "error"
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                fetched = await self._fetch(url, started)
            outcome = "ok"
            return fetched
        except TimeoutError:
            outcome = "timeout"
            raise ProblemError(
                FETCH_TIMEOUT,
                f"downloading the URL took longer than {self.timeout_s:g} s; host the file "
                "somewhere faster or upload it to POST /tag instead",
            ) from None
        except ProblemError as problem:
            outcome = "refused" if problem.kind is FORBIDDEN_URL else "error"
            raise
        finally:
            if self._metrics:
                self._metrics.fetch_duration.labels(outcome=outcome).observe(
                    time.monotonic() - started
                )

    def _parse(self, url: str | httpx.URL) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as error:
            raise ProblemError(BAD_REQUEST, f"not a valid URL: {error}") from None
        if parsed.scheme not in ("http", "https"):
            raise ProblemError(
                FORBIDDEN_URL, f"only http and https URLs are accepted, not {parsed.scheme!r}"
            )
        if not parsed.host:
            raise ProblemError(BAD_REQUEST, "the URL has no host name")
        if not _HOST.fullmatch(parsed.raw_host.decode("ascii", "replace")):
            raise ProblemError(BAD_REQUEST, f"not a valid host name: {parsed.host!r}")
        if parsed.userinfo:
            raise ProblemError(FORBIDDEN_URL, "URLs with credentials (user:password@) are refused")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if self.policy.allowed_ports and port not in self.policy.allowed_ports:
            ports = ", ".join(str(p) for p in self.policy.allowed_ports)
            raise ProblemError(FORBIDDEN_URL, f"port {port} is not allowed; use port {ports}")
        return parsed

    async def _allowed_addresses(self, url: httpx.URL) -> list[IPAddress]:
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await self._resolve(host, port)
            except (OSError, UnicodeError) as error:
                raise ProblemError(FETCH_FAILED, f"could not resolve the host {host!r}") from error
        if not addresses:
            raise ProblemError(FETCH_FAILED, f"the host {host!r} has no addresses")
        refused = [a for a in addresses if not self.policy.allows(a)]
        if refused:
            # Every address must pass: a name with one public and one private address could
            # otherwise be pointed at either.
            raise ProblemError(
                FORBIDDEN_URL,
                f"the host {host!r} resolves to a private, loopback or otherwise non-public "
                "address; only publicly reachable hosts can be fetched",
            )
        return addresses

    async def _fetch(self, url: str, started: float) -> FetchedFile:
        current = self._parse(url)
        for hop in range(self.max_redirects + 1):
            addresses = await self._allowed_addresses(current)
            response = await self._connect(current, addresses)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise ProblemError(
                            FETCH_FAILED, f"{_describe(current)} redirected without a Location"
                        )
                    current = self._parse(current.join(location))
                    continue
                if response.status_code >= 400 or response.status_code < 200:
                    raise ProblemError(
                        FETCH_FAILED,
                        f"{_describe(current)} answered HTTP {response.status_code} "
                        f"{response.reason_phrase}; check that the URL points to the audio file",
                    )
                data = await self._read_body(response, current)
            finally:
                await response.aclose()
            return FetchedFile(
                data=data, url=str(current), redirects=hop, seconds=time.monotonic() - started
            )
        raise ProblemError(
            FETCH_FAILED,
            f"more than {self.max_redirects} redirects; give the final URL of the audio file",
        )

    async def _connect(self, url: httpx.URL, addresses: list[IPAddress]) -> httpx.Response:
        """GET `url` from the first validated address that accepts a connection."""
        headers = {
            "Host": url.netloc.decode("ascii"),
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        }
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        for address in addresses:
            request = self._client.build_request(
                "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
            )
            try:
                return await self._client.send(request, stream=True)
            except httpx.ConnectError:
                logger.info("could not connect to %s (%s)", url.host, address)
                continue
            except httpx.TimeoutException as error:
                raise ProblemError(
                    FETCH_TIMEOUT, f"{_describe(url)} did not answer in time"
                ) from error
            except httpx.HTTPError as error:
                raise ProblemError(
                    FETCH_FAILED, f"{_describe(url)} failed: {type(error).__name__}"
                ) from error
        raise ProblemError(FETCH_FAILED, f"could not connect to {url.host!r}")

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        too_large = ProblemError(
            REMOTE_TOO_LARGE,
            f"the file at {_describe(url)} is larger than the limit of {self.max_bytes / 1e6:g} MB "
            "on downloads (the fetch limit, TAGGER_MAX_FETCH_BYTES)",
        )
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        chunks: list[bytes] = []
        received = 0
        sniffed = False
        try:
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > self.max_bytes:
                    raise too_large
                chunks.append(chunk)
                if not sniffed and received >= SNIFF_BYTES:
                    sniffed = True
                    self._check_audio(b"".join(chunks), url)
        except httpx.TimeoutException as error:
            raise ProblemError(FETCH_TIMEOUT, f"{_describe(url)} stalled") from error
        except httpx.HTTPError as error:
            raise ProblemError(
                FETCH_FAILED, f"the download from {_describe(url)} broke off"
            ) from error
        data = b"".join(chunks)
        if not sniffed and data:  # an empty body is judged (422) by the tagging service
            self._check_audio(data, url)
        return data

    @staticmethod
    def _check_audio(head: bytes, url: httpx.URL) -> None:
        # Stop early instead of downloading megabytes of an HTML page or an image.
        if sniff_audio(head) is None:
            raise ProblemError(
                UNSUPPORTED_MEDIA,
                f"{_describe(url)} is not an audio file in a supported format "
                f"({SUPPORTED_FORMATS})",
            )
