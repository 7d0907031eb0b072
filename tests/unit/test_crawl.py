"""Crawl providers against real HTTP servers on 127.0.0.1 that these tests start."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from pageperfect.sources.crawl import (
    AsyncJobsCrawler,
    CrawlError,
    DirectCrawler,
    classify_status,
    decode_html,
    looks_like_html,
    make_crawler,
    retry_after_seconds,
)
from pageperfect.sources.crawl import _BoundedBody, _TooLarge
from pageperfect.sources.guard import AllowList, parse_allowed_hosts

LOOPBACK = parse_allowed_hosts("127.0.0.1")
PAGE = "<!DOCTYPE html><html><head><title>Café</title></head><body><h1>Café crème</h1></body></html>"


def _gzip_bomb(decoded_size: int, layers: int = 1) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    data = b"".join(compressor.compress(block) for _ in range(decoded_size >> 20)) + compressor.flush()
    for _ in range(layers - 1):
        data = gzip.compress(data, compresslevel=9)
    return data


# --- the loopback site ---------------------------------------------------------------


Route = Callable[["_Handler"], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Site

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        route = self.server.routes.get(path)
        if route is None:
            prefix = next((p for p in self.server.routes if p.endswith("/") and path.startswith(p)), None)
            route = self.server.routes[prefix] if prefix else None
        if route is None:
            self.reply(404, b"<html><body>no such page</body></html>")
        else:
            route(self)

    def query(self, name: str) -> str:
        return parse_qs(urlsplit(self.path).query).get(name, [""])[0]

    def json_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def reply(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
        send_length: bool = True,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if send_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, status: int = 302, headers: dict[str, str] | None = None) -> None:
        self.reply(status, b"", headers={"Location": location, **(headers or {})})

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Site(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.jobs: dict[str, dict] = {}
        self.job_payloads: list[dict] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hang up mid-body on purpose (size caps, timeouts)


def _slow(handler: _Handler) -> None:
    time.sleep(1.5)
    handler.reply(200, PAGE.encode())


def _cookie_dance(handler: _Handler) -> None:
    if "visited=1" in (handler.headers.get("Cookie") or ""):
        handler.reply(200, PAGE.encode())
    else:
        handler.redirect("/cookie", headers={"Set-Cookie": "visited=1; Path=/"})


def _chain(handler: _Handler) -> None:
    handler.redirect(f"/chain?n={int(handler.query('n') or 0) + 1}")


def _install_site_routes(site: _Site) -> None:
    bomb = _gzip_bomb(200 << 20)
    nested_bomb = _gzip_bomb(200 << 20, layers=2)
    big = b"<html><body>" + b"x" * 15_000_000 + b"</body></html>"
    base = site.base
    site.routes.update(
        {
            "/latin1": lambda h: h.reply(200, PAGE.encode("latin-1"), content_type="text/html; charset=ISO-8859-1"),
            "/meta-charset": lambda h: h.reply(
                200,
                b'<html><head><meta charset="windows-1252"></head><body>price \x80 5</body></html>',
                content_type="text/html",
            ),
            "/utf8": lambda h: h.reply(200, PAGE.encode()),
            "/xhtml": lambda h: h.reply(200, PAGE.encode(), content_type="application/xhtml+xml"),
            "/bad-utf8": lambda h: h.reply(200, b"<html><body>caf\xe9 \xc3\x28 ok</body></html>"),
            "/r1": lambda h: h.redirect("/r2", 302),
            "/r2": lambda h: h.redirect("r3", 301),
            "/r3": lambda h: h.redirect(f"{base}/utf8#top", 307),
            "/to-metadata": lambda h: h.redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-private": lambda h: h.redirect("http://10.1.2.3/"),
            "/to-file": lambda h: h.redirect("file:///etc/passwd"),
            "/to-loopback-ip": lambda h: h.redirect(f"http://127.0.0.1:{site.server_address[1]}/utf8"),
            "/loop-a": lambda h: h.redirect("/loop-b"),
            "/loop-b": lambda h: h.redirect("/loop-a"),
            "/chain": _chain,
            "/cookie": _cookie_dance,
            "/no-location": lambda h: h.reply(302, b""),
            "/gone": lambda h: h.reply(410, b"gone"),
            "/error": lambda h: h.reply(500, b"oops"),
            "/busy": lambda h: h.reply(429, b"slow down", headers={"Retry-After": "7"}),
            "/forbidden": lambda h: h.reply(403, b"no"),
            "/json": lambda h: h.reply(200, b'{"a": 1}', content_type="application/json"),
            "/untyped-html": lambda h: h.reply(
                200, b"\n  <!doctype html><html><body>hi</body></html>", content_type=None
            ),
            "/untyped-binary": lambda h: h.reply(200, b"\x89PNG\r\n\x1a\n\x00\x00", content_type=None),
            "/gzip": lambda h: h.reply(200, gzip.compress(PAGE.encode()), headers={"Content-Encoding": "gzip"}),
            "/deflate-raw": lambda h: h.reply(
                200, zlib.compress(PAGE.encode())[2:-4], headers={"Content-Encoding": "deflate"}
            ),
            "/bomb": lambda h: h.reply(200, bomb, headers={"Content-Encoding": "gzip"}),
            "/nested-bomb": lambda h: h.reply(200, nested_bomb, headers={"Content-Encoding": "gzip, gzip"}),
            "/big": lambda h: h.reply(200, big),
            "/big-unsized": lambda h: h.reply(200, big, send_length=False),
            "/slow": _slow,
        }
    )


# --- the fake async jobs API -----------------------------------------------------------

API_KEY = "test-key"


def _jobs_submit(handler: _Handler) -> None:
    payload = handler.json_body()
    handler.server.job_payloads.append(payload)
    if payload.get("apiKey") != API_KEY:
        handler.reply(401, b'{"error": "bad api key"}', content_type="application/json")
        return
    job_id = f"job-{len(handler.server.jobs) + 1}"
    handler.server.jobs[job_id] = {"url": payload["url"], "polls": 0}
    body = {"id": job_id, "status": "running", "statusUrl": f"{handler.server.base}/api/jobs/{job_id}"}
    handler.reply(200, json.dumps(body).encode(), content_type="application/json")


def _jobs_status(handler: _Handler) -> None:
    job_id = urlsplit(handler.path).path.rsplit("/", 1)[-1]
    job = handler.server.jobs.get(job_id)
    if job is None:
        handler.reply(404, b'{"error": "no such job"}', content_type="application/json")
        return
    job["polls"] += 1
    url: str = job["url"]
    body: dict = {"id": job_id, "url": url, "status": "running"}
    if job["polls"] >= 2:  # running on the first poll, done on the second
        if url.endswith("/fail"):
            body |= {"status": "failed", "failReason": "target refused all attempts"}
        elif url.endswith("/missing"):
            body |= {"status": "finished", "response": {"statusCode": 404, "headers": {}, "body": "not found"}}
        elif url.endswith("/file.pdf"):
            response = {"statusCode": 200, "headers": {"Content-Type": "application/pdf"}, "body": "%PDF-1.4"}
            body |= {"status": "finished", "response": response}
        else:
            headers = {"content-type": "text/html; charset=utf-8"}
            body |= {"status": "finished", "response": {"statusCode": 200, "headers": headers, "body": PAGE}}
    handler.reply(200, json.dumps(body).encode(), content_type="application/json")


def _install_jobs_api(site: _Site) -> None:
    site.routes["/api/jobs"] = _jobs_submit
    site.routes["/api/jobs/"] = _jobs_status
    site.routes["/api-down/"] = lambda h: h.reply(
        503, b"maintenance", content_type="text/plain", headers={"Retry-After": "3"}
    )


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    server = _Site()
    _install_site_routes(server)
    _install_jobs_api(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
async def crawler() -> AsyncIterator[DirectCrawler]:
    direct = DirectCrawler(LOOPBACK, connect_timeout=2, read_timeout=2)
    yield direct
    await direct.aclose()


async def _crawl_error(crawler: DirectCrawler, url: str) -> CrawlError:
    with pytest.raises(CrawlError) as caught:
        await crawler.fetch(url)
    return caught.value


async def _fresh_crawl_error(url: str, allow: AllowList, **options) -> CrawlError:
    """The error of a crawl by a crawler of its own, made with these options and closed after."""
    crawler = DirectCrawler(allow, **options)
    try:
        return await _crawl_error(crawler, url)
    finally:
        await crawler.aclose()


# --- direct crawler: pages ---------------------------------------------------------------


async def test_page_is_decoded_with_the_declared_charset(site: _Site, crawler: DirectCrawler) -> None:
    ticket = await crawler.submit(f"{site.base}/latin1")
    result = ticket.result
    assert ticket.provider == "direct" and ticket.ticket_id and result is not None
    assert result.html == PAGE
    assert result.encoding == "cp1252"
    assert result.status_code == 200
    assert result.content_type == "text/html"
    assert result.url == result.final_url == f"{site.base}/latin1"
    assert result.redirects == []
    assert result.bytes == len(PAGE.encode("latin-1"))
    assert result.provider == "direct"
    assert result.fetched_at.tzinfo is not None
    assert abs(datetime.now(UTC) - result.fetched_at) < timedelta(minutes=1)


async def test_meta_charset_is_used_when_the_header_has_none(site: _Site, crawler: DirectCrawler) -> None:
    result = await crawler.fetch(f"{site.base}/meta-charset")
    assert "price € 5" in result.html
    assert result.encoding == "cp1252"


async def test_invalid_utf8_is_replaced_not_fatal(site: _Site, crawler: DirectCrawler) -> None:
    result = await crawler.fetch(f"{site.base}/bad-utf8")
    assert result.encoding == "utf-8"
    assert "caf\ufffd" in result.html and "ok</body>" in result.html


async def test_xhtml_is_accepted(site: _Site, crawler: DirectCrawler) -> None:
    result = await crawler.fetch(f"{site.base}/xhtml")
    assert result.content_type == "application/xhtml+xml"
    assert result.html == PAGE


async def test_missing_content_type_is_sniffed(site: _Site, crawler: DirectCrawler) -> None:
    result = await crawler.fetch(f"{site.base}/untyped-html")
    assert result.content_type == "text/html"
    assert "<body>hi</body>" in result.html
    error = await _crawl_error(crawler, f"{site.base}/untyped-binary")
    assert (error.kind, error.retryable) == ("NotHtml", False)


async def test_non_html_is_refused(site: _Site, crawler: DirectCrawler) -> None:
    error = await _crawl_error(crawler, f"{site.base}/json")
    assert (error.kind, error.retryable) == ("NotHtml", False)
    assert "application/json" in str(error)


@pytest.mark.parametrize("path", ["/gzip", "/deflate-raw"])
async def test_compressed_bodies_are_decoded(site: _Site, crawler: DirectCrawler, path: str) -> None:
    result = await crawler.fetch(f"{site.base}{path}")
    assert result.html == PAGE
    assert result.bytes == len(PAGE.encode())


# --- direct crawler: redirects -------------------------------------------------------------


async def test_redirect_chain_is_followed(site: _Site, crawler: DirectCrawler) -> None:
    result = await crawler.fetch(f"{site.base}/r1")
    assert result.url == f"{site.base}/r1"
    assert result.final_url == f"{site.base}/utf8"
    assert result.redirects == [f"{site.base}/r2", f"{site.base}/r3", f"{site.base}/utf8"]
    assert result.html == PAGE


@pytest.mark.parametrize(
    ("path", "kind", "fragment"),
    [
        ("/to-metadata", "BlockedAddress", "169.254.169.254, a cloud metadata address"),
        ("/to-private", "BlockedAddress", "10.1.2.3, a private address"),
        ("/to-file", "InvalidUrl", "file: scheme"),
    ],
)
async def test_redirect_to_a_refused_url_stops_before_connecting(
    site: _Site, crawler: DirectCrawler, path: str, kind: str, fragment: str
) -> None:
    error = await _crawl_error(crawler, f"{site.base}{path}")
    # Refused by the guard: a connect attempt to these addresses would end as a ConnectError or a Timeout.
    assert (error.kind, error.retryable) == (kind, False)
    assert fragment in str(error)


async def test_redirect_hop_is_checked_against_the_allow_list(site: _Site) -> None:
    # The site is allowed by name only; its redirect to the bare loopback IP is not.
    crawler = DirectCrawler(parse_allowed_hosts("localhost"), connect_timeout=2, read_timeout=2)
    try:
        port = site.server_address[1]
        assert (await crawler.fetch(f"http://localhost:{port}/utf8")).html == PAGE
        error = await _crawl_error(crawler, f"http://localhost:{port}/to-loopback-ip")
        assert error.kind == "BlockedAddress"
    finally:
        await crawler.aclose()


async def test_host_resolving_to_loopback_is_blocked_without_the_allow_list(site: _Site) -> None:
    error = await _fresh_crawl_error(
        f"http://localhost:{site.server_address[1]}/utf8", AllowList(), connect_timeout=2, read_timeout=2
    )
    assert (error.kind, error.retryable) == ("BlockedAddress", False)
    assert "localhost resolves to 127.0.0.1" in str(error)


async def test_redirect_loop_is_reported(site: _Site, crawler: DirectCrawler) -> None:
    error = await _crawl_error(crawler, f"{site.base}/loop-a")
    assert (error.kind, error.retryable) == ("TooManyRedirects", False)
    assert "loop" in str(error) and "/loop-b" in str(error)


async def test_endless_redirects_stop_at_the_limit(site: _Site) -> None:
    error = await _fresh_crawl_error(f"{site.base}/chain", LOOPBACK, max_redirects=4)
    assert (error.kind, error.retryable) == ("TooManyRedirects", False)
    assert "more than 4" in str(error)


async def test_redirect_back_with_a_new_cookie_is_not_a_loop(site: _Site, crawler: DirectCrawler) -> None:
    result = await crawler.fetch(f"{site.base}/cookie")
    assert result.html == PAGE
    assert result.redirects == [f"{site.base}/cookie"]
    # Cookies belong to one crawl: the next crawl starts without them.
    again = await crawler.fetch(f"{site.base}/cookie")
    assert again.redirects == [f"{site.base}/cookie"]


async def test_redirect_without_location_is_an_http_error(site: _Site, crawler: DirectCrawler) -> None:
    error = await _crawl_error(crawler, f"{site.base}/no-location")
    assert (error.kind, error.retryable, error.status_code) == ("HttpError", False, 302)


# --- direct crawler: status codes, sizes, timeouts -------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "retryable", "status"),
    [
        ("/does-not-exist", "NotFound", False, 404),
        ("/gone", "NotFound", False, 410),
        ("/error", "HttpError", True, 500),
        ("/forbidden", "HttpError", False, 403),
    ],
)
async def test_status_codes_are_classified(
    site: _Site, crawler: DirectCrawler, path: str, kind: str, retryable: bool, status: int
) -> None:
    error = await _crawl_error(crawler, f"{site.base}{path}")
    assert (error.kind, error.retryable, error.status_code) == (kind, retryable, status)


async def test_429_keeps_retry_after(site: _Site, crawler: DirectCrawler) -> None:
    error = await _crawl_error(crawler, f"{site.base}/busy")
    assert (error.kind, error.retryable, error.retry_after) == ("HttpError", True, 7.0)


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
async def test_page_over_the_cap_is_too_large(site: _Site, crawler: DirectCrawler, path: str) -> None:
    error = await _crawl_error(crawler, f"{site.base}{path}")
    assert (error.kind, error.retryable) == ("TooLarge", False)
    assert "10,000,000" in str(error)


@pytest.mark.parametrize("path", ["/bomb", "/nested-bomb"])
async def test_gzip_bomb_stops_at_the_cap_quickly(site: _Site, path: str) -> None:
    crawler = DirectCrawler(LOOPBACK, max_bytes=1_000_000)
    try:
        error = await _crawl_error(crawler, f"{site.base}{path}")
    finally:
        await crawler.aclose()
    assert (error.kind, error.retryable) == ("TooLarge", False)


@pytest.mark.parametrize(("coding", "layers"), [("gzip", 1), ("gzip, gzip", 2)])
def test_a_gzip_bomb_is_inflated_no_further_than_the_cap(coding: str, layers: int) -> None:
    bomb = _gzip_bomb(200 << 20, layers=layers)
    body = _BoundedBody(coding, max_bytes=1_000_000)
    with pytest.raises(_TooLarge):
        body.feed(bomb)
    # Each layer stops one byte past the cap, not at the 200 MB the bomb holds.
    produced = [layer._produced for layer in body._layers]
    assert len(produced) == layers and all(n <= 1_000_001 for n in produced)


async def test_slow_server_times_out_and_is_retryable(site: _Site) -> None:
    crawler = DirectCrawler(LOOPBACK, connect_timeout=1, read_timeout=0.3)
    try:
        error = await _crawl_error(crawler, f"{site.base}/slow")
    finally:
        await crawler.aclose()
    # The page comes after 1.5 s: the 0.3 s read timeout, not the whole crawl's, ends the wait.
    assert (error.kind, error.retryable) == ("Timeout", True)
    assert "ReadTimeout" in str(error)


async def test_total_timeout_bounds_the_whole_crawl(site: _Site) -> None:
    crawler = DirectCrawler(LOOPBACK, read_timeout=5, total_timeout=0.3)
    try:
        error = await _crawl_error(crawler, f"{site.base}/slow")
    finally:
        await crawler.aclose()
    assert (error.kind, error.retryable) == ("Timeout", True)


async def test_closed_port_is_a_retryable_connect_error(crawler: DirectCrawler) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await _crawl_error(crawler, f"http://127.0.0.1:{port}/")
    assert (error.kind, error.retryable) == ("ConnectError", True)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "", "http://10.0.0.1/"])
async def test_refused_start_urls_are_not_retryable(crawler: DirectCrawler, url: str) -> None:
    error = await _crawl_error(crawler, url)
    assert error.kind in {"InvalidUrl", "BlockedAddress"}
    assert error.retryable is False


async def test_direct_poll_has_nothing_to_collect(crawler: DirectCrawler) -> None:
    with pytest.raises(CrawlError) as caught:
        await crawler.poll("anything")
    assert caught.value.retryable is False


# --- pure helpers ------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (200, None, None),
        (204, None, None),
        (404, "NotFound", False),
        (410, "NotFound", False),
        (408, "HttpError", True),
        (429, "HttpError", True),
        (503, "HttpError", True),
        (400, "HttpError", False),
        (401, "HttpError", False),
        (301, "HttpError", False),
    ],
)
def test_classify_status(status: int, kind: str | None, retryable: bool | None) -> None:
    error = classify_status(status, "https://example.com/")
    assert (error.kind, error.retryable) == (kind, retryable) if error else kind is None


def test_decode_html_prefers_bom_then_header_then_meta() -> None:
    assert decode_html("\ufeffé".encode("utf-8"), "iso-8859-1") == ("é", "utf-8")
    assert decode_html("é".encode(), "iso-8859-1") == ("Ã©", "cp1252")
    assert decode_html(b"<meta charset='utf-16'>\xc3\xa9", None) == ("<meta charset='utf-16'>é", "utf-8")
    assert decode_html(b"caf\xe9", "no-such-charset")[0].startswith("caf")


def test_detection_handles_undeclared_legacy_text() -> None:
    text = "Приветствуем вас на нашем сайте, здесь вы найдёте всё о выпечке хлеба. " * 20
    html, encoding = decode_html(text.encode("cp1251"), None)
    assert html == text
    assert encoding != "utf-8"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<!DOCTYPE html><html>", True),
        (b"\xef\xbb\xbf  <html lang=en>", True),
        (b"<p>hi</p>", True),
        (b'<?xml version="1.0"?>\n<html xmlns="x">', True),
        (b'{"a": 1}', False),
        (b"<pre>", False),
        (b"", False),
    ],
)
def test_html_sniffing(body: bytes, expected: bool) -> None:
    assert looks_like_html(body) is expected


# --- async jobs crawler ----------------------------------------------------------------------


@pytest.fixture
async def jobs(site: _Site) -> AsyncIterator[AsyncJobsCrawler]:
    crawler = AsyncJobsCrawler(f"{site.base}/api", API_KEY, render=True, timeout=5)
    yield crawler
    await crawler.aclose()


async def test_jobs_crawler_submits_then_polls_until_finished(site: _Site, jobs: AsyncJobsCrawler) -> None:
    ticket = await jobs.submit("https://Example.com/page#frag")
    assert ticket.provider == "scraperapi" and ticket.result is None
    payload = site.job_payloads[-1]
    assert payload == {
        "apiKey": API_KEY,
        "url": "https://example.com/page",
        "apiParams": {"render": True, "premium": False},
    }
    assert await jobs.poll(ticket.ticket_id) is None  # still running
    result = await jobs.poll(ticket.ticket_id)
    assert result is not None
    assert result.html == PAGE
    assert result.status_code == 200
    assert result.content_type == "text/html"
    assert result.url == "https://example.com/page"
    assert result.provider == "scraperapi"
    assert result.bytes == len(PAGE.encode())


async def test_jobs_crawler_reports_a_failed_job(jobs: AsyncJobsCrawler) -> None:
    ticket = await jobs.submit("https://example.com/fail")
    assert await jobs.poll(ticket.ticket_id) is None
    with pytest.raises(CrawlError) as caught:
        await jobs.poll(ticket.ticket_id)
    assert (caught.value.kind, caught.value.retryable) == ("ProviderError", False)
    assert "target refused all attempts" in str(caught.value)


@pytest.mark.parametrize(("path", "kind"), [("/missing", "NotFound"), ("/file.pdf", "NotHtml")])
async def test_jobs_crawler_classifies_the_page_like_the_direct_crawler(
    jobs: AsyncJobsCrawler, path: str, kind: str
) -> None:
    ticket = await jobs.submit(f"https://example.com{path}")
    assert await jobs.poll(ticket.ticket_id) is None
    with pytest.raises(CrawlError) as caught:
        await jobs.poll(ticket.ticket_id)
    assert (caught.value.kind, caught.value.retryable) == (kind, False)


async def test_jobs_crawler_validates_the_target_url(site: _Site, jobs: AsyncJobsCrawler) -> None:
    sent = len(site.job_payloads)
    with pytest.raises(CrawlError) as caught:
        await jobs.submit("file:///etc/passwd")
    assert caught.value.kind == "InvalidUrl"
    assert len(site.job_payloads) == sent  # never reached the provider


async def test_jobs_crawler_provider_errors(site: _Site) -> None:
    bad_key = AsyncJobsCrawler(f"{site.base}/api", "wrong-key")
    down = AsyncJobsCrawler(f"{site.base}/api-down", API_KEY)
    try:
        with pytest.raises(CrawlError) as refused:
            await bad_key.submit("https://example.com/page")
        assert (refused.value.kind, refused.value.retryable, refused.value.status_code) == ("ProviderError", False, 401)
        assert "wrong-key" not in str(refused.value)
        with pytest.raises(CrawlError) as unavailable:
            await down.submit("https://example.com/page")
        assert (unavailable.value.kind, unavailable.value.retryable) == ("ProviderError", True)
        assert unavailable.value.retry_after == 3.0
        with pytest.raises(CrawlError) as unknown:
            await bad_key.poll("no-such-job")
        assert (unknown.value.kind, unknown.value.retryable) == ("ProviderError", False)
    finally:
        await bad_key.aclose()
        await down.aclose()


# --- make_crawler ------------------------------------------------------------------------------


async def test_make_crawler_builds_the_named_provider() -> None:
    common = {"allow": LOOPBACK, "render": False, "premium": True, "max_bytes": 1000}
    direct = make_crawler("direct", scraper_base_url=None, scraper_api_key=None, **common)
    jobs = make_crawler("scraperapi", scraper_base_url="https://api.example/", scraper_api_key="k", **common)
    try:
        assert isinstance(direct, DirectCrawler) and direct.name == "direct"
        assert isinstance(jobs, AsyncJobsCrawler) and jobs.name == "scraperapi"
    finally:
        await direct.aclose()
        await jobs.aclose()
    with pytest.raises(ValueError, match="API key"):
        make_crawler("scraperapi", scraper_base_url="https://api.example/", scraper_api_key=None, **common)
    with pytest.raises(ValueError, match="unknown crawl provider"):
        make_crawler("curl", scraper_base_url=None, scraper_api_key=None, **common)
