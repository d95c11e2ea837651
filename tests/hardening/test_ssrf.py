"""SSRF through `POST /tag/url` on the real service: every spelling of loopback, private and
special ranges, names that resolve to them, redirects to them, other schemes, credentials and
over-long URLs are refused with a 400 problem body, and listeners on loopback prove that no
connection was made.

The service runs with the default address policy, except that any port is allowed (so the
address rule alone decides) and 127.0.0.2 counts as public: the stand-in for a public web server
that redirects elsewhere. A test resolver (`create_app(resolver=...)`) gives names their
addresses without DNS.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.app.audio import encode
from tests.app.servers import FileServer, Route, ServiceProcess
from tests.hardening.tools import problem_type, record

NAMES = {
    "internal.test": "127.0.0.1",
    "v6-loopback.test": "::1",
    "mapped.test": "::ffff:127.0.0.1",
    "metadata.test": "169.254.169.254",
    "private.test": "192.168.1.10",
    "cgnat.test": "100.64.0.1",
    "mixed.test": "93.184.215.14,10.0.0.1",  # one public, one private address
    "music.example": "127.0.0.2",  # the "public" web server of these tests
}


class LoopbackListener:
    """Counts connections to one port on both 127.0.0.1 and ::1."""

    def __init__(self) -> None:
        self.accepted = 0
        self._stop = threading.Event()
        for _ in range(20):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.bind(("127.0.0.1", 0))
            self.port = int(v4.getsockname()[1])
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                v6.bind(("::1", self.port))
            except OSError:
                v4.close()
                v6.close()
                continue
            break
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and ::1")
        self._sockets = [v4, v6]
        self._threads = [threading.Thread(target=self._accept, args=(s,)) for s in self._sockets]
        for sock, thread in zip(self._sockets, self._threads, strict=True):
            sock.listen(16)
            sock.settimeout(0.1)
            thread.start()

    def _accept(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[LoopbackListener]:
    counter = LoopbackListener()
    try:
        yield counter
    finally:
        counter.close()


@pytest.fixture(scope="module")
def public_site() -> Iterator[FileServer]:
    site = FileServer("127.0.0.2")
    try:
        yield site
    finally:
        site.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServiceProcess]:
    command = ["-m", "tests.hardening.launch"]
    for name, addresses in NAMES.items():
        command += ["--resolve", f"{name}={addresses}"]
    process = ServiceProcess(
        {
            "fetch_allowed_ports": [],
            "fetch_allowed_networks": ["127.0.0.2/32"],
            "fetch_timeout_s": 5,
        },
        command=command,
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def tag_url(server: ServiceProcess, url: str) -> httpx.Response:
    return httpx.post(f"{server.url}/tag/url", json={"url": url}, timeout=30)


def loopback_spellings(port: int) -> list[str]:
    hosts = [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",  # one decimal number
        "0x7f000001",  # one hexadecimal number
        "0x7f.0.0.1",
        "017700000001",  # one octal number
        "127.255.255.254",
        "localhost",
        "LocalHost",
        "0.0.0.0",
        "0",
        "127。0。0。1",  # ideographic full stops, normalised by IDNA
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",  # deprecated IPv4-compatible form
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
        "internal.test",
        "v6-loopback.test",
        "mapped.test",
    ]
    urls = [f"http://{host}:{port}/song.mp3" for host in hosts]
    return [*urls, f"HTTP://127.0.0.1:{port}/song.mp3", f"http://127.0.0.1:{port}#@example.org/"]


PRIVATE = [
    "http://10.0.0.1/song.mp3",
    "http://172.16.0.1/song.mp3",
    "http://192.168.1.1/song.mp3",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fd00:ec2::254]/latest/meta-data/",  # the same, over IPv6 (AWS)
    "http://100.64.0.1/song.mp3",  # carrier-grade NAT
    "http://198.18.0.1/song.mp3",
    "http://192.0.0.8/song.mp3",
    "http://224.0.0.1/song.mp3",
    "http://255.255.255.255/song.mp3",
    "http://[fe80::1]/song.mp3",
    "http://[fc00::1]/song.mp3",
    "http://metadata.test/latest/meta-data/",
    "http://private.test/song.mp3",
    "http://cgnat.test/song.mp3",
    "http://mixed.test/song.mp3",
]

SCHEMES = [
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "ftp://127.0.0.1/song.mp3",
    "gopher://127.0.0.1:70/_GET",
    "data:audio/mpeg;base64,SUQzBAAAAAAAAA==",
    "dict://127.0.0.1:11211/stats",
    "ldap://127.0.0.1/",
    "ws://127.0.0.1/",
    "javascript:alert(1)",
    "jar:http://127.0.0.1!/",
    "//127.0.0.1/song.mp3",
    "127.0.0.1/song.mp3",
]


def credentials(port: int, site: str) -> list[str]:
    return [
        f"http://user:secret@{site}/song.mp3",
        f"http://user@127.0.0.1:{port}/",
        f"http://music.example@127.0.0.1:{port}/",
        f"http://music.example\\@127.0.0.1:{port}/",
        f"http://127.0.0.1:{port}\\@music.example/",
        "http://127.0.0.1%2f@music.example/",
    ]


def malformed(port: int) -> list[str]:
    return [
        f"http://0177.0.0.1:{port}/",  # leading zeros are refused, not read as octal
        f"http://127.000.000.001:{port}/",
        f"http://①②⑦.⓪.⓪.①:{port}/",
        f"http://[::1%25lo]:{port}/",
        f"http://%31%32%37.0.0.1:{port}/",
        f"http://127.0.0.1:{port}:80/",
        f"http://127.0.0.1:{port}/\r\nHost: evil",
        "http:///song.mp3",
        "http://[::1/",
        f"http://music.example:{port}/" + "a" * 2100,  # longer than the 2,048 allowed
    ]


def test_refused_urls_are_400_and_never_connected(
    server: ServiceProcess, listener: LoopbackListener, public_site: FileServer
) -> None:
    port = listener.port
    site = f"music.example:{public_site.port}"
    cases = (
        [(url, "forbidden-url") for url in loopback_spellings(port)]
        + [(url, "forbidden-url") for url in PRIVATE]
        + [(url, "forbidden-url") for url in SCHEMES]
        + [(url, "forbidden-url") for url in credentials(port, site)]
        + [(url, "bad-request") for url in malformed(port)]
    )
    fetches_before = server.metric("tagger_fetch_duration_seconds_count", 'outcome="ok"')
    for url, slug in cases:
        response = tag_url(server, url)
        assert response.status_code == 400, (url, response.text[:300])
        assert problem_type(response) == slug, (url, response.json()["detail"])
    time.sleep(0.5)  # let a stray connection arrive
    assert listener.accepted == 0
    assert public_site.requests == []
    assert server.metric("tagger_fetch_duration_seconds_count", 'outcome="ok"') == fetches_before
    record("ssrf_urls", refused=len(cases), connections=listener.accepted)


def test_redirects_to_forbidden_places_are_refused(
    server: ServiceProcess, listener: LoopbackListener, public_site: FileServer
) -> None:
    port = listener.port
    site = f"http://music.example:{public_site.port}"
    public_site.routes["/song.mp3"] = Route(encode("mp3", 4.0))
    targets = {
        "/to-loopback": f"http://127.0.0.1:{port}/song.mp3",
        "/to-decimal": f"http://2130706433:{port}/song.mp3",
        "/to-v6": f"http://[::1]:{port}/song.mp3",
        "/to-name": f"http://internal.test:{port}/song.mp3",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-file": "file:///etc/passwd",
        "/to-gopher": f"gopher://127.0.0.1:{port}/_GET",
        "/to-credentials": f"http://user:secret@music.example:{public_site.port}/song.mp3",
        "/twice": f"{site}/to-loopback",
    }
    for path, location in targets.items():
        public_site.routes[path] = Route(status=302, headers={"Location": location})
    # The positive control: the same site, reached the same way, is fetched and tagged. So the
    # refusals below come from the rules, not from a setup that could not connect anyway.
    assert tag_url(server, f"{site}/song.mp3").status_code == 200
    for path in targets:
        response = tag_url(server, site + path)
        assert response.status_code == 400, (path, response.text[:300])
        assert problem_type(response) == "forbidden-url", path
    time.sleep(0.5)
    assert listener.accepted == 0
    record("ssrf_redirects", refused=len(targets), connections=listener.accepted)
    # And the listener does count: one connection on each address family.
    for host in ("127.0.0.1", "::1"):
        socket.create_connection((host, port), timeout=5).close()
    deadline = time.monotonic() + 5
    while listener.accepted < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.accepted == 2


def test_oversized_url_bodies_are_refused_before_parsing(server: ServiceProcess) -> None:
    # A URL of 100 kB makes a body over the 16 KiB every JSON endpoint accepts.
    response = tag_url(server, "http://music.example/" + "a" * 100_000)
    assert response.status_code == 413
    assert problem_type(response) == "upload-too-large"
