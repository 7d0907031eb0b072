"""Crawl providers: fetch one page's HTML, either directly or through an external async jobs API.

Every provider has the same two steps so the workflow can treat them alike:
`submit(url)` starts a crawl and `poll(ticket_id)` collects it. The direct crawler
finishes inside `submit`; an external provider hands back a job id to poll.

Failures are CrawlError with a `kind` (the job's error record) and `retryable`
(whether trying again can help).
"""

from __future__ import annotations

import asyncio
import codecs
import re
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Protocol
from urllib.parse import quote

import charset_normalizer
import httpx

from pageperfect.sources.guard import AllowList, GuardError, guarded_client, validate_url
from pageperfect.sources.retry_after import retry_after_seconds  # noqa: F401 - part of this module's API

DEFAULT_MAX_BYTES = 10_000_000
DEFAULT_USER_AGENT = "PagePerfectBot/0.1 (+https://github.com/pageperfect)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({408, 429})

# Decoded here rather than by httpx so the size cap holds inside the decompressor:
# httpx inflates each network chunk in full, and a nested "gzip, gzip" bomb can turn
# a few kilobytes into gigabytes in one call.
ACCEPT_ENCODING = "gzip, deflate"
_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"


class CrawlError(Exception):
    """A crawl that did not produce a page.

    `kind` is one of NotFound, NotHtml, TooLarge, BlockedAddress, InvalidUrl, TooManyRedirects (no retry
    helps: workflows.stages.PERMANENT_ERRORS) or HttpError, Timeout, ConnectError, ProviderError.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"CrawlError(kind={self.kind!r}, retryable={self.retryable}, message={str(self)!r})"


@dataclass
class CrawlResult:
    url: str
    final_url: str
    status_code: int
    content_type: str  # the declared media type, or "text/html" when sniffed
    encoding: str  # the codec the HTML was decoded with
    html: str
    fetched_at: datetime
    provider: str
    redirects: list[str] = field(default_factory=list)  # every hop after `url`, ending with final_url
    bytes: int = 0  # decoded body size


@dataclass
class CrawlTicket:
    provider: str
    ticket_id: str
    result: CrawlResult | None = None  # set when the provider finished within submit


class CrawlProvider(Protocol):
    name: str

    async def submit(self, url: str) -> CrawlTicket: ...

    async def poll(self, ticket_id: str) -> CrawlResult | None:
        """The result, or None while the crawl is still running."""
        ...

    async def aclose(self) -> None: ...


# --- Status codes -------------------------------------------------------------------


def classify_status(status_code: int, url: str, *, retry_after: str | None = None) -> CrawlError | None:
    """The error for a final HTTP status, or None when it is a success (2xx)."""
    if 200 <= status_code < 300:
        return None
    if status_code in (404, 410):
        gone = "is gone (410)" if status_code == 410 else "was not found (404)"
        return CrawlError("NotFound", f"{url} {gone}", retryable=False, status_code=status_code)
    if status_code >= 500 or status_code in RETRYABLE_STATUSES:
        wait = retry_after_seconds(retry_after) if status_code in (429, 503) else None
        hint = f"; the server asks to wait {wait:g} s" if wait is not None else ""
        return CrawlError(
            "HttpError",
            f"{url} answered HTTP {status_code}{hint}; will retry",
            retryable=True,
            retry_after=wait,
            status_code=status_code,
        )
    return CrawlError("HttpError", f"{url} answered HTTP {status_code}", retryable=False, status_code=status_code)


# --- Content type and character set -------------------------------------------------


def parse_content_type(header: str | None) -> tuple[str, str | None]:
    """("text/html", "utf-8") from a Content-Type header; ("", None) when it is missing."""
    if not header or not header.strip():
        return "", None
    message = Message()
    message["content-type"] = header
    charset = message.get_param("charset")
    return message.get_content_type(), (str(charset).strip() or None) if charset else None


# The WHATWG MIME sniffing patterns for HTML, after leading whitespace.
_HTML_SNIFF = re.compile(
    rb"^(?:<!doctype html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style"
    rb"|<title|<b|<body|<br|<p|<!--)[ \t\n\f\r>]",
    re.IGNORECASE,
)
_XHTML_SNIFF = re.compile(rb"^<\?xml[^>]*>\s*(?:<!doctype html|<html)", re.IGNORECASE)


def looks_like_html(body: bytes) -> bool:
    head = body[:1024]
    for bom in (codecs.BOM_UTF8,):
        head = head.removeprefix(bom)
    head = head.lstrip(b" \t\n\f\r")
    return bool(_HTML_SNIFF.match(head) or _XHTML_SNIFF.match(head))


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_\-:.]+)", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Browsers read these labels as windows-1252, and so do we.
_WINDOWS_1252_ALIASES = frozenset({"latin-1", "iso8859-1", "ascii"})


def _codec_name(label: str | None, *, from_meta: bool = False) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    if name in _WINDOWS_1252_ALIASES:
        return "cp1252"
    if from_meta and name.startswith("utf-16"):
        return "utf-8"  # a page that can declare itself in ASCII is not UTF-16
    return name


def _ascii_compatible(encoding: str) -> bool:
    probe = "<html lang=\"en\"><meta charset='x'>"
    try:
        return probe.encode("ascii").decode(encoding) == probe
    except (UnicodeDecodeError, LookupError):
        return False


def decode_html(body: bytes, declared_charset: str | None) -> tuple[str, str]:
    """Decode a page's bytes: BOM, then the header's charset, then <meta charset>, then UTF-8, then detection.

    Invalid bytes become U+FFFD; this never raises on bad input.
    """
    encoding: str | None = None
    for bom, name in _BOMS:
        if body.startswith(bom):
            encoding = name
            break
    encoding = encoding or _codec_name(declared_charset)
    if encoding is None:
        match = _META_CHARSET.search(body[:4096])
        encoding = _codec_name(match.group(1).decode("ascii"), from_meta=True) if match else None
    if encoding is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            best = charset_normalizer.from_bytes(body).best()
            encoding = _codec_name(best.encoding) if best is not None else None
            if encoding is None or not _ascii_compatible(encoding):
                # HTML markup is ASCII; a guess that garbles it (UTF-16 on a short body) is wrong.
                encoding = "cp1252"
    text = body.decode(encoding, errors="replace")
    return text, "utf-8" if encoding == "utf-8-sig" else encoding


# --- Bounded body reading -----------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Inflater:
    """One content-coding layer that never produces more than `limit` bytes in total."""

    def __init__(self, coding: str, limit: int) -> None:
        self._coding = coding
        self._limit = limit
        self._produced = 0
        self._decompressor: zlib._Decompress | None = None
        if coding in ("gzip", "x-gzip"):
            self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def _start_deflate(self, data: bytes) -> None:
        # "deflate" should be zlib-wrapped, but some servers send raw deflate.
        wrapped = len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
        self._decompressor = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        if self._decompressor is None:
            if not data:
                return b""
            self._start_deflate(data)
        assert self._decompressor is not None
        out = bytearray()
        while data:
            room = self._limit + 1 - self._produced
            chunk = self._decompressor.decompress(data, room)
            self._produced += len(chunk)
            out += chunk
            if self._produced > self._limit:
                raise _TooLarge
            data = self._decompressor.unconsumed_tail
            if self._decompressor.eof:
                rest = self._decompressor.unused_data
                # A gzip body may hold several members back to back; other trailing bytes are ignored.
                if rest.startswith(b"\x1f\x8b") and self._coding != "deflate":
                    self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    data = rest
                else:
                    break
        return bytes(out)

    def flush(self) -> bytes:
        if self._decompressor is None:
            return b""
        tail = self._decompressor.flush()
        self._produced += len(tail)
        if self._produced > self._limit:
            raise _TooLarge
        return tail


class _BoundedBody:
    """Collects a response body through its content codings, stopping once it exceeds `max_bytes`."""

    SUPPORTED = frozenset({"gzip", "x-gzip", "deflate"})

    def __init__(self, content_encoding: str | None, max_bytes: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        unsupported = [c for c in codings if c not in self.SUPPORTED]
        if unsupported:
            raise ValueError(f"unsupported Content-Encoding {', '.join(unsupported)}")
        # Codings are listed in the order they were applied, so they come off in reverse.
        self._layers = [_Inflater(c, max_bytes) for c in reversed(codings)]
        self._max_bytes = max_bytes
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        for layer in self._layers:
            data = layer.feed(data)
        self._append(data)

    def finish(self) -> bytes:
        for index, layer in enumerate(self._layers):
            data = layer.flush()
            for later in self._layers[index + 1 :]:
                data = later.feed(data)
            self._append(data)
        return bytes(self._body)

    def _append(self, data: bytes) -> None:
        self._body += data
        if len(self._body) > self._max_bytes:
            raise _TooLarge


def _too_large(url: str, max_bytes: int) -> CrawlError:
    return CrawlError("TooLarge", f"{url} is larger than the {max_bytes:,}-byte limit", retryable=False)


def _not_html(url: str, content_type: str) -> CrawlError:
    what = f"is {content_type}" if content_type else "has no Content-Type and does not look like HTML"
    return CrawlError("NotHtml", f"{url} {what}, not an HTML page", retryable=False)


def _from_guard(error: GuardError) -> CrawlError:
    return CrawlError(error.kind, str(error), retryable=False)


# --- Direct crawler -----------------------------------------------------------------


class DirectCrawler:
    """Fetches pages itself over httpx, through the address guard, following redirects hop by hop."""

    name = "direct"

    def __init__(
        self,
        allow: AllowList,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        connect_timeout: float = 10,
        read_timeout: float = 20,
        total_timeout: float = 60,
        user_agent: str = DEFAULT_USER_AGENT,
        max_redirects: int = 10,
    ) -> None:
        self._allow = allow
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        # Read timeouts reset on every byte; the total stops a server that drips forever.
        self._total_timeout = total_timeout
        timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
        self._client = guarded_client(allow, timeout=timeout, user_agent=user_agent)
        # Cookies live per crawl (see fetch), never across crawls: the client keeps none.
        self._client.cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._client.headers["Accept"] = _ACCEPT
        self._client.headers["Accept-Encoding"] = ACCEPT_ENCODING

    async def submit(self, url: str) -> CrawlTicket:
        result = await self.fetch(url)
        return CrawlTicket(provider=self.name, ticket_id=uuid.uuid4().hex, result=result)

    async def poll(self, ticket_id: str) -> CrawlResult | None:
        raise CrawlError("ProviderError", "direct crawls finish in submit; there is nothing to poll", retryable=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> CrawlResult:
        try:
            start_url = validate_url(url, self._allow)
        except GuardError as exc:
            raise _from_guard(exc) from exc
        try:
            async with asyncio.timeout(self._total_timeout):
                return await self._follow(url, start_url)
        except GuardError as exc:
            raise _from_guard(exc) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise CrawlError("Timeout", f"{url} timed out ({type(exc).__name__}); will retry", retryable=True) from exc
        except httpx.TransportError as exc:
            detail = str(exc) or type(exc).__name__
            raise CrawlError("ConnectError", f"could not fetch {url}: {detail}; will retry", retryable=True) from exc

    async def _follow(self, requested: str, current: str) -> CrawlResult:
        redirects: list[str] = []
        seen = {current}
        cookies = httpx.Cookies()
        while True:
            request = self._client.build_request("GET", current)
            cookies.set_cookie_header(request)
            response = await self._client.send(request, stream=True)
            try:
                cookies.extract_cookies(response)
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    next_url = self._next_hop(current, location)
                    # Coming back to a URL without new cookies can only repeat itself.
                    if next_url in seen and not response.headers.get_list("set-cookie"):
                        chain = " -> ".join([requested, *redirects, next_url])
                        raise CrawlError("TooManyRedirects", f"redirect loop: {chain}", retryable=False)
                    if len(redirects) >= self._max_redirects:
                        raise CrawlError(
                            "TooManyRedirects",
                            f"{requested} redirects more than {self._max_redirects} times",
                            retryable=False,
                        )
                    redirects.append(next_url)
                    seen.add(next_url)
                    current = next_url
                    continue
                return await self._read_page(requested, current, response, redirects)
            finally:
                await response.aclose()

    def _next_hop(self, current: str, location: str) -> str:
        try:
            target = str(httpx.URL(current).join(location.strip()))
        except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
            raise CrawlError(
                "InvalidUrl", f"{current} redirects to an invalid URL {location!r}", retryable=False
            ) from exc
        try:
            return validate_url(target, self._allow)
        except GuardError as exc:
            raise CrawlError(exc.kind, f"{current} redirects to a refused URL: {exc}", retryable=False) from exc

    async def _read_page(
        self, requested: str, final_url: str, response: httpx.Response, redirects: list[str]
    ) -> CrawlResult:
        error = classify_status(response.status_code, final_url, retry_after=response.headers.get("retry-after"))
        if error is not None:
            raise error

        content_type, charset = parse_content_type(response.headers.get("content-type"))
        if content_type and content_type not in HTML_TYPES:
            raise _not_html(final_url, content_type)
        encoded_length = response.headers.get("content-length", "")
        if not response.headers.get("content-encoding") and encoded_length.isdigit():
            if int(encoded_length) > self._max_bytes:
                raise _too_large(final_url, self._max_bytes)

        try:
            body_reader = _BoundedBody(response.headers.get("content-encoding"), self._max_bytes)
        except ValueError as exc:
            raise CrawlError("HttpError", f"{final_url}: {exc}", retryable=False) from exc
        try:
            async for chunk in response.aiter_raw():
                body_reader.feed(chunk)
            body = body_reader.finish()
        except _TooLarge:
            raise _too_large(final_url, self._max_bytes) from None
        except zlib.error as exc:
            raise CrawlError(
                "HttpError", f"{final_url} sent a corrupt compressed body: {exc}", retryable=False
            ) from exc

        if not content_type:
            if not looks_like_html(body):
                raise _not_html(final_url, "")
            content_type = "text/html"
        html, encoding = decode_html(body, charset)
        return CrawlResult(
            url=requested,
            final_url=final_url,
            status_code=response.status_code,
            content_type=content_type,
            encoding=encoding,
            html=html,
            fetched_at=datetime.now(UTC),
            provider=self.name,
            redirects=list(redirects),
            bytes=len(body),
        )


# --- External async jobs provider ---------------------------------------------------


class AsyncJobsCrawler:
    """A ScraperAPI-style async jobs API: POST {base_url}/jobs, then GET {base_url}/jobs/{id}.

    The target URL is validated for syntax (and literal internal IPs), but the
    provider fetches it from its own network, so checking where its host resolves
    is the provider's concern, not ours.
    """

    name = "scraperapi"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        render: bool = False,
        premium: bool = False,
        timeout: float = 30,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._api_key = api_key
        self._render = render
        self._premium = premium
        self._max_bytes = max_bytes
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def submit(self, url: str) -> CrawlTicket:
        try:
            target = validate_url(url, AllowList())
        except GuardError as exc:
            raise _from_guard(exc) from exc
        payload = {
            "apiKey": self._api_key,
            "url": target,
            "apiParams": {"render": self._render, "premium": self._premium},
        }
        data = await self._call("POST", "jobs", json=payload)
        job_id = data.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise CrawlError("ProviderError", "the crawl provider accepted the job but returned no id", retryable=True)
        return CrawlTicket(provider=self.name, ticket_id=job_id, result=None)

    async def poll(self, ticket_id: str) -> CrawlResult | None:
        data = await self._call("GET", f"jobs/{quote(ticket_id, safe='')}")
        status = data.get("status")
        if status == "failed":
            reason = data.get("failReason") or "no reason given"
            raise CrawlError("ProviderError", f"the crawl provider failed the job: {reason}", retryable=False)
        if status != "finished":
            return None
        response = data.get("response")
        if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
            raise CrawlError("ProviderError", "the crawl provider finished the job without a response", retryable=False)
        return self._result(data, response)

    def _result(self, data: dict, response: dict) -> CrawlResult:
        url = str(data.get("url") or "")
        status_code = response["statusCode"]
        headers = httpx.Headers({str(k): str(v) for k, v in (response.get("headers") or {}).items()})
        error = classify_status(status_code, url or "the page", retry_after=headers.get("retry-after"))
        if error is not None:
            raise error
        body = response.get("body")
        html = body if isinstance(body, str) else ""
        size = len(html.encode("utf-8", errors="replace"))
        if size > self._max_bytes:
            raise _too_large(url or "the page", self._max_bytes)
        content_type, _charset = parse_content_type(headers.get("content-type"))
        if content_type and content_type not in HTML_TYPES:
            raise _not_html(url or "the page", content_type)
        if not content_type:
            if not looks_like_html(html[:1024].encode("utf-8", errors="replace")):
                raise _not_html(url or "the page", "")
            content_type = "text/html"
        return CrawlResult(
            url=url,
            final_url=url,
            status_code=status_code,
            content_type=content_type,
            encoding="utf-8",  # the provider already decoded the page
            html=html,
            fetched_at=datetime.now(UTC),
            provider=self.name,
            redirects=[],
            bytes=size,
        )

    async def _call(self, method: str, path: str, **kwargs: object) -> dict:
        try:
            response = await self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise CrawlError(
                "ProviderError", f"the crawl provider timed out: {type(exc).__name__}", retryable=True
            ) from exc
        except httpx.TransportError as exc:
            raise CrawlError("ProviderError", f"could not reach the crawl provider: {exc}", retryable=True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            raise CrawlError(
                "ProviderError",
                f"the crawl provider answered HTTP {response.status_code}; will retry",
                retryable=True,
                retry_after=wait,
                status_code=response.status_code,
            )
        if response.status_code >= 400:
            raise CrawlError(
                "ProviderError",
                f"the crawl provider refused {method} /{path} with HTTP {response.status_code}: {response.text[:200]}",
                retryable=False,
                status_code=response.status_code,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise CrawlError(
                "ProviderError", "the crawl provider sent a response that is not JSON", retryable=True
            ) from exc
        if not isinstance(data, dict):
            raise CrawlError("ProviderError", "the crawl provider sent an unexpected JSON shape", retryable=True)
        return data


def make_crawler(
    name: str,
    *,
    allow: AllowList,
    scraper_base_url: str | None,
    scraper_api_key: str | None,
    render: bool,
    premium: bool,
    max_bytes: int,
) -> CrawlProvider:
    """The crawl provider named in the settings: "direct" or "scraperapi"."""
    if name == DirectCrawler.name:
        return DirectCrawler(allow, max_bytes=max_bytes)
    if name == AsyncJobsCrawler.name:
        if not scraper_base_url or not scraper_api_key:
            raise ValueError("the scraperapi crawl provider needs a base URL and an API key")
        return AsyncJobsCrawler(scraper_base_url, scraper_api_key, render=render, premium=premium, max_bytes=max_bytes)
    raise ValueError(f"unknown crawl provider {name!r}; use 'direct' or 'scraperapi'")
