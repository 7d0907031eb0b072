"""The address guard against DNS rebinding and against redirects to internal hosts.

A rebinding attacker's DNS answers a public address when the guard asks and an
internal one when the socket connects. The guard resolves once and connects to the
address it checked, so there is no second answer to exploit; each new connection
(and each redirect hop) is resolved and checked again. Here the "DNS" is a resolver
installed on the event loop that changes its answer after the first question; the
connections are real, to a server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from pageperfect.sources.crawl import CrawlError, DirectCrawler
from pageperfect.sources.guard import BlockedAddress, GuardedTransport, parse_allowed_hosts

REBIND_HOST = "rebind.attacker.test"
PAGE = b"<!DOCTYPE html><html><head><title>T</title></head><body><h1>Fig care</h1><p>Water weekly.</p></body></html>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", "http://" + self.path[len("/to/") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class RebindingResolver:
    """Answers `first` for the first question about a name, `then` for every later one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, answers: dict[str, tuple[str, str]]):
        self.real = loop.getaddrinfo
        self.answers = answers
        self.questions: list[str] = []

    async def __call__(self, host, port, *args, **kwargs):
        if host not in self.answers:
            return await self.real(host, port, *args, **kwargs)
        self.questions.append(host)
        first, then = self.answers[host]
        address = first if self.questions.count(host) == 1 else then
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


@pytest.fixture
def dns(monkeypatch):
    def install(answers: dict[str, tuple[str, str]]) -> RebindingResolver:
        loop = asyncio.get_running_loop()
        resolver = RebindingResolver(loop, answers)
        monkeypatch.setattr(loop, "getaddrinfo", resolver)
        return resolver

    return install


class _Recording(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connected_to: list[str] = []

    async def connect_tcp(
        self,
        host,
        port,
        timeout=None,
        local_address=None,  # type: ignore[no-untyped-def]
        socket_options=None,
    ):
        self.connected_to.append(host)
        return await self.inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def test_connection_goes_to_the_address_that_was_checked(port, dns):
    # 127.0.0.1 stands for the public address the attacker shows first; 10.0.0.1 for the internal one.
    resolver = dns({REBIND_HOST: ("127.0.0.1", "10.0.0.1")})
    backend = _Recording()
    transport = GuardedTransport(parse_allowed_hosts("127.0.0.1"), inner_backend=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://{REBIND_HOST}:{port}/")
    assert response.status_code == 200 and response.content == PAGE
    # One question, and the socket was opened to its (checked) answer, not to the host name:
    # the rebound answer was never asked for.
    assert resolver.questions == [REBIND_HOST]
    assert backend.connected_to == ["127.0.0.1"]


async def test_a_new_connection_is_checked_again_and_the_rebound_answer_refused(port, dns):
    resolver = dns({REBIND_HOST: ("127.0.0.1", "10.0.0.1")})
    backend = _Recording()
    transport = GuardedTransport(parse_allowed_hosts("127.0.0.1"), inner_backend=backend)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(f"http://{REBIND_HOST}:{port}/", headers={"Connection": "close"})).status_code == 200
        with pytest.raises(BlockedAddress, match=f"{REBIND_HOST} resolves to 10.0.0.1, a private address"):
            await client.get(f"http://{REBIND_HOST}:{port}/")
    assert resolver.questions == [REBIND_HOST, REBIND_HOST]
    assert backend.connected_to == ["127.0.0.1"]  # nothing was opened to 10.0.0.1


async def test_crawl_refuses_a_redirect_to_a_name_that_resolves_inside(port, dns):
    dns({"internal.attacker.test": ("10.0.0.5", "10.0.0.5")})
    crawler = DirectCrawler(parse_allowed_hosts("localhost"), connect_timeout=2, read_timeout=2)
    try:
        assert (await crawler.fetch(f"http://localhost:{port}/page")).html.encode() == PAGE
        with pytest.raises(CrawlError) as caught:
            await crawler.fetch(f"http://localhost:{port}/to/internal.attacker.test:{port}/page")
    finally:
        await crawler.aclose()
    assert (caught.value.kind, caught.value.retryable) == ("BlockedAddress", False)
    assert "internal.attacker.test resolves to 10.0.0.5" in str(caught.value)


async def test_crawl_refuses_a_redirect_whose_host_rebinds_between_hops(port, dns):
    # The first hop's host is checked and fetched; the redirect names the same host on another
    # port (a new connection), which is resolved again, now to an internal address, and refused.
    dns({REBIND_HOST: ("127.0.0.1", "10.0.0.1")})
    crawler = DirectCrawler(parse_allowed_hosts("127.0.0.1"), connect_timeout=2, read_timeout=2)
    try:
        with pytest.raises(CrawlError) as caught:
            await crawler.fetch(f"http://{REBIND_HOST}:{port}/to/{REBIND_HOST}:1/x")
    finally:
        await crawler.aclose()
    assert (caught.value.kind, caught.value.retryable) == ("BlockedAddress", False)
    assert f"{REBIND_HOST} resolves to 10.0.0.1" in str(caught.value)
