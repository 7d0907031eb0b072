"""A catalogue of hostile and broken inputs, each with its expected outcome.

Outcomes are of three kinds, and never a 5xx, a hang or a lost job:
- the API refuses the request with a 4xx and a message, and creates nothing;
- the job runs and completes;
- the job fails without retrying (one attempt) and its reason is in the dead-letter
  table, or, where the failure might pass (a host name that does not resolve), after
  the job's retries are spent.

The pipeline here allows only the host name `localhost`: the test site is reached as
http://localhost:PORT, and its loopback address by any other spelling is refused, as a
private address would be in production. tests/integration/test_intake.py has the first
twenty API cases; these are the rest.
"""

from __future__ import annotations

import json
import random
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.integration.test_pipeline import demo_keywords

ROW = {"query": "fiddle leaf fig", "clicks": 1, "impressions": 10, "ctr": 0.1, "position": 3.0}
GOOD = "http://example.com/page"


def _private_name() -> str | None:
    """A host name other than `localhost` that resolves, on this machine, to an address that is not public."""
    import ipaddress

    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if name != "localhost" and infos and not ipaddress.ip_address(infos[0][4][0].split("%")[0]).is_global:
            return name
    return None


PRIVATE_NAME = _private_name()
needs_private_name = pytest.mark.skipif(PRIVATE_NAME is None, reason="no host name here resolves to a private address")


@pytest.fixture
async def guarded(pipeline_factory):
    return await pipeline_factory(allowed_hosts="localhost")


def _local(site, path: str) -> str:
    return f"http://localhost:{site.base_url.rsplit(':', 1)[1]}{path}"


async def _refused(
    pipeline, pool, *, status: int, says: str, json_body=None, content: bytes | None = None, headers: dict | None = None
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM pageperfect_jobs")
    if content is not None:
        response = await pipeline.http.post(
            "/v1/jobs", content=content, headers=headers or {"Content-Type": "application/json"}
        )
    else:
        response = await pipeline.http.post("/v1/jobs", json=json_body)
    assert response.status_code == status, response.text[:500]
    assert says.lower() in response.text.lower(), response.text[:500]
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_jobs") == before


# --------------------------------------------------------------------------- URLs refused at the door

REFUSED_URLS = {
    "loopback-ip": ("http://127.0.0.1/", "loopback"),
    "loopback-other-ip": ("http://127.8.9.10/", "loopback"),
    "loopback-short-form": ("http://127.1/", "standard IPv4"),
    "decimal-ip": ("http://2130706433/", "standard IPv4"),
    "octal-ip": ("http://0177.0.0.1/", "IPv4"),
    "hex-ip": ("http://0x7f.0.0.1/", "IPv4"),
    "private-192-168": ("http://192.168.1.1/admin", "private"),
    "private-172-16": ("http://172.16.0.1/", "private"),
    "cgnat": ("http://100.64.0.1/", "carrier-grade"),
    "metadata-ecs": ("http://169.254.170.2/v2/credentials", "metadata"),
    "metadata-alibaba": ("http://100.100.100.200/latest/meta-data/", "metadata"),
    "metadata-aws-ipv6": ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    "link-local": ("http://169.254.1.1/", "link-local"),
    "ipv6-link-local": ("http://[fe80::1]/", "link-local"),
    "ipv6-unique-local": ("http://[fc00::1]/", "private"),
    "ipv4-mapped-ipv6": ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    "ipv4-mapped-metadata": ("http://[::ffff:169.254.169.254]/", "metadata"),
    "nat64-private": ("http://[64:ff9b::a00:1]/", "NAT64"),
    "unspecified": ("http://0.0.0.0/", "unspecified"),
    "ipv6-unspecified": ("http://[::]/", "unspecified"),
    "ipv6-zone-id": ("http://[fe80::1%25eth0]/", "zone"),
    "file-scheme": ("file:///etc/passwd", "scheme"),
    "javascript-mixed-case": ("JaVaScRiPt:alert(document.cookie)", "scheme"),
    "data-scheme": ("data:text/html,<script>alert(1)</script>", "scheme"),
    "gopher-scheme": ("gopher://127.0.0.1:6379/_INFO", "scheme"),
    "no-scheme": ("example.com/page", "no scheme"),
    "credentials-in-url": ("http://user:secret@example.com/", "password"),
    "port-out-of-range": ("http://example.com:99999/", ""),
    "whitespace-in-host": ("http://exa mple.com/", "whitespace"),
    "ten-thousand-characters": ("http://example.com/" + "a" * 10_000, "2048"),
    "idn-fullwidth-localhost": ("http://ｌｏｃａｌｈｏｓｔ/", "IDNA"),
    "idn-invalid-symbol": ("http://☃.net/", "IDNA"),
}


@pytest.mark.parametrize(("url", "says"), list(REFUSED_URLS.values()), ids=list(REFUSED_URLS))
async def test_url_is_refused_at_intake(guarded, pool, url, says):
    await _refused(guarded, pool, status=422, says=says, json_body={"url": url})


@needs_private_name
async def test_host_name_resolving_to_a_private_address_is_refused(guarded, pool, site):
    port = site.base_url.rsplit(":", 1)[1]
    await _refused(guarded, pool, status=422, says="resolves to", json_body={"url": f"http://{PRIVATE_NAME}:{port}/"})


# --------------------------------------------------------------------------- jobs that go through the pipeline


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


def _demo(site) -> bytes:
    return site.handler.routes["/index.html"][2]


def _gzip_bomb(inflated: int) -> bytes:
    """A gzip body of about 1/1000 the size it inflates to."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(inflated >> 20)) + packer.flush()


def _random_bytes(n: int) -> bytes:
    return random.Random(7).randbytes(n)


# case -> (the page served at /hostile/<case>, built from the demo page and the site's port;
#          the expected job status; the dead letter's reason prefix)
PAGES: dict[str, tuple[Callable[[bytes, str], Page], str, str | None]] = {
    "page-50-mb": (
        lambda demo, port: Page(b"<html><body><p>" + b"a " * (25 << 20) + b"</p></body></html>"),
        "failed",
        "TooLarge",
    ),
    "gzip-bomb": (
        lambda demo, port: Page(_gzip_bomb(200 << 20), headers=(("Content-Encoding", "gzip"),)),
        "failed",
        "TooLarge",
    ),
    "binary-octet-stream": (
        lambda demo, port: Page(_random_bytes(50_000), content_type="application/octet-stream"),
        "failed",
        "NotHtml",
    ),
    "binary-labelled-html": (lambda demo, port: Page(_random_bytes(50_000)), "failed", "NoContent"),
    "pdf-labelled-html": (
        lambda demo, port: Page(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n" * 2000),
        "failed",
        "NoContent",
    ),
    "invalid-utf8": (
        lambda demo, port: Page(
            demo.replace(b"Fiddle Leaf Fig Care", b"Fiddle \xff\xfe\xc3 Leaf \xed\xa0\x80 Fig Care")
        ),
        "completed",
        None,
    ),
    "nul-bytes": (lambda demo, port: Page(demo.replace(b"<h2", b"\x00<h2\x00")), "completed", None),
    "no-text": (
        lambda demo, port: Page(
            b"<html><head><script>var a = 1;</script><style>p{}</style></head>"
            b"<body><script>document.write('x')</script></body></html>"
        ),
        "failed",
        "NoContent",
    ),
    "empty-body": (lambda demo, port: Page(b""), "failed", "NoContent"),
    "100000-tiny-paragraphs": (
        lambda demo, port: Page(b"<html><body><h1>Tiny</h1>" + b"<p>fig care tip</p>" * 100_000 + b"</body></html>"),
        "completed",
        None,
    ),
    "deeply-nested": (
        lambda demo, port: Page(
            b"<html><body>"
            + b"<div>" * 100_000
            + b"<p>Fiddle leaf fig care in depth.</p>"
            + b"</div>" * 100_000
            + b"</body></html>"
        ),
        "completed",
        None,
    ),
    "one-huge-word": (
        lambda demo, port: Page(b"<html><body><h1>Word</h1><p>" + b"fig" * 700_000 + b"</p></body></html>"),
        "completed",
        None,
    ),
    "not-found": (lambda demo, port: Page(b"gone", status=404, content_type="text/plain"), "failed", "NotFound"),
    "redirect-to-metadata": (
        lambda demo, port: _redirect("http://169.254.169.254/latest/"),
        "failed",
        "BlockedAddress",
    ),
    "redirect-to-loopback-ip": (
        lambda demo, port: _redirect(f"http://127.0.0.1:{port}/index.html"),
        "failed",
        "BlockedAddress",
    ),
    "redirect-to-file": (lambda demo, port: _redirect("file:///etc/passwd", 301), "failed", "InvalidUrl"),
    "redirect-loop": (lambda demo, port: _redirect("/hostile/redirect-loop"), "failed", "TooManyRedirects"),
}


def _redirect(location: str, status: int = 302) -> Page:
    return Page(b"", status=status, headers=(("Location", location),))


async def _run_job(
    pipeline, pool, url: str, *, keywords=None, expected: str, reason: str | None, attempts: int = 1
) -> dict:
    created = await pipeline.submit(
        url=url, keywords=keywords or demo_keywords()[:15], max_attempts=3, retry_delay_seconds=0.1
    )
    job = await pipeline.wait(created["job_id"], timeout=120)
    letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    if expected == "completed":
        assert job["status"] == "completed", (job["error"], job["stages"])
        assert letter is None
    else:
        assert job["status"] == "failed", job
        assert letter is not None and letter["failure_reason"].startswith(reason), letter and letter["failure_reason"]
        assert letter["attempt_count"] == attempts, letter["failure_reason"]
        assert job["error"] == letter["failure_reason"]
    return job


@pytest.mark.parametrize("case", list(PAGES))
async def test_page_ends_completed_or_dead_lettered(guarded, pool, site, case):
    build, expected, reason = PAGES[case]
    page = build(_demo(site), site.base_url.rsplit(":", 1)[1])
    site.add(
        f"/hostile/{case}", page.body, status=page.status, content_type=page.content_type, headers=dict(page.headers)
    )
    await _run_job(guarded, pool, _local(site, f"/hostile/{case}"), expected=expected, reason=reason)


@needs_private_name
async def test_redirect_to_a_name_resolving_to_a_private_address_is_dead_lettered(guarded, pool, site):
    port = site.base_url.rsplit(":", 1)[1]
    site.add(
        "/hostile/redirect-to-private-name",
        b"",
        status=302,
        headers={"Location": f"http://{PRIVATE_NAME}:{port}/index.html"},
    )
    job = await _run_job(
        guarded, pool, _local(site, "/hostile/redirect-to-private-name"), expected="failed", reason="BlockedAddress"
    )
    assert f"{PRIVATE_NAME} resolves to" in job["error"]


async def test_host_that_does_not_resolve_is_retried_then_dead_lettered(guarded, pool):
    # The intake lets it through (it may resolve later, or at an external crawl provider);
    # the crawl's connect error is worth retrying, so the job fails once its attempts are spent.
    await _run_job(
        guarded, pool, "http://xn--exmple-4nf.com/page", expected="failed", reason="ConnectError", attempts=3
    )


# --------------------------------------------------------------------------- keyword data


def _with_rows(rows: list[dict]) -> dict:
    return {"url": GOOD, "keywords": rows}


KEYWORD_CASES = {
    "negative-clicks": (_with_rows([{**ROW, "clicks": -1}]), 422, "clicks"),
    "position-over-1000": (_with_rows([{**ROW, "position": 1001}]), 422, "position"),
    "ctr-as-percent": (_with_rows([{**ROW, "ctr": 4.17}]), 422, "ctr"),
    "query-over-20000-chars": (_with_rows([{**ROW, "query": "fig " * 5001}]), 422, "query"),  # MAX_QUERY_CHARS
    "empty-query": (_with_rows([{**ROW, "query": ""}]), 422, "query"),
    "query-not-a-string": (_with_rows([{**ROW, "query": ["fig"]}]), 422, "query"),
    "impressions-as-text": (_with_rows([{**ROW, "impressions": "many"}]), 422, "impressions"),
    "unknown-column": (_with_rows([{**ROW, "revenue": 3}]), 422, "revenue"),
    "over-50000-rows": (_with_rows([{"query": f"q{i}"} for i in range(50_001)]), 422, "50000"),
    "query-with-nul": (_with_rows([{**ROW, "query": "fig\u0000care"}]), 422, "NUL"),
    "brand-term-with-nul": ({"url": GOOD, "options": {"filters": {"brand_terms": ["a\u0000b"]}}}, 422, "NUL"),
    "query-with-lone-surrogate": (None, 422, "query"),
}


@pytest.mark.parametrize("case", list(KEYWORD_CASES))
async def test_bad_keyword_data_is_refused(guarded, pool, case):
    body, status, says = KEYWORD_CASES[case]
    if case == "query-with-lone-surrogate":  # only raw JSON can carry it
        raw = b'{"url": "%s", "keywords": [{"query": "fig \\ud800 care"}]}' % GOOD.encode()
        await _refused(guarded, pool, status=status, says=says, content=raw)
    else:
        await _refused(guarded, pool, status=status, says=says, json_body=body)


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e400"])
async def test_non_finite_keyword_numbers_are_refused(guarded, pool, value):
    raw = b'{"url": "%s", "keywords": [{"query": "fig", "position": %s}]}' % (GOOD.encode(), value.encode())
    await _refused(guarded, pool, status=422, says="position", content=raw)


async def test_a_million_keyword_rows_are_refused_with_413(guarded, pool):
    row = json.dumps(ROW).encode()
    raw = b'{"url": "%s", "keywords": [' % GOOD.encode() + b",".join([row] * 1_000_000) + b"]}"
    await _refused(guarded, pool, status=413, says="8 MB", content=raw)


async def test_a_million_rows_without_content_length_are_refused_with_413(guarded, pool):
    row = json.dumps(ROW).encode()

    async def chunks():
        yield b'{"url": "%s", "keywords": [' % GOOD.encode()
        for _ in range(1000):
            yield b",".join([row] * 1000) + b","
        yield row + b"]}"

    before = await pool.fetchval("SELECT count(*) FROM pageperfect_jobs")
    response = await guarded.http.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_jobs") == before


async def test_duplicated_and_odd_but_valid_rows_complete(guarded, pool, site):
    site.add("/hostile/duplicates.html", _demo(site))
    rows = demo_keywords()[:20]
    odd = [
        *rows,
        *rows,  # every query twice
        {**ROW, "query": "   fiddle    leaf   fig   "},  # spacing is collapsed
        {**ROW, "query": "\u200bfig\u200b"},  # zero-width characters are text
        {**ROW, "query": "<script>alert(1)</script>"},
        {**ROW, "query": "'; DROP TABLE pageperfect_jobs; --"},
        {**ROW, "impressions": 1e300, "clicks": 1e300},
        {"query": "only a query"},
    ]
    await _run_job(
        guarded, pool, _local(site, "/hostile/duplicates.html"), keywords=odd, expected="completed", reason=None
    )


# --------------------------------------------------------------------------- API bodies

API_CASES = {
    "body-is-array": ([], 422, ""),
    "body-is-null": (None, 422, ""),
    "body-is-string": ("http://example.com/", 422, ""),
    "url-as-list": ({"url": [GOOD]}, 422, "url"),
    "url-as-object": ({"url": {"href": GOOD}}, 422, "url"),
    "keywords-as-object": ({"url": GOOD, "keywords": {"query": "fig"}}, 422, "keywords"),
    "options-as-list": ({"url": GOOD, "options": [1, 2]}, 422, "options"),
    "unknown-option": ({"url": GOOD, "options": {"temperature": 2}}, 422, "temperature"),
    "unknown-filter": ({"url": GOOD, "options": {"filters": {"country": "us"}}}, 422, "country"),
    "eps-negative": ({"url": GOOD, "options": {"eps": -1}}, 422, "eps"),
    "top-gaps-huge": ({"url": GOOD, "options": {"top_gaps": 10**9}}, 422, "top_gaps"),
    "brand-terms-huge": ({"url": GOOD, "options": {"filters": {"brand_terms": ["x"] * 10_000}}}, 422, "brand_terms"),
    "skip-steps-huge": ({"url": GOOD, "skip_steps": ["segment_embed"] * 10_000}, 422, "skip_steps"),
    "priority-float": ({"url": GOOD, "priority": 5.5}, 422, "priority"),
    "priority-huge": ({"url": GOOD, "priority": 10**30}, 422, "priority"),
    "page-id-huge": ({"page_id": 2**70}, 422, "page_id"),
    "page-id-bigint-edge": ({"page_id": 2**63}, 422, "page_id"),
    "page-id-negative": ({"page_id": -1}, 422, "page_id"),
    "retry-delay-negative": ({"url": GOOD, "retry_delay_seconds": -5}, 422, "retry_delay_seconds"),
    "retry-delay-nan-string": ({"url": GOOD, "retry_delay_seconds": "NaN"}, 422, "retry_delay_seconds"),
}


@pytest.mark.parametrize("case", list(API_CASES))
async def test_malformed_api_body_is_refused(guarded, pool, case):
    body, status, says = API_CASES[case]
    await _refused(guarded, pool, status=status, says=says, json_body=body)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"url=http://example.com/", "application/x-www-form-urlencoded", 422),
        (b"http://example.com/", "text/plain", 422),
        (b"\xff\xfe\x00{", "application/json", 422),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),  # too deep for the JSON parser
        (b'{"url": "http://example.com/", "url": "http://10.0.0.1/"}', "application/json", 422),
    ],
    ids=["form-encoded", "text-plain", "binary-json", "nested-100000-deep", "duplicate-key-private-last"],
)
async def test_body_that_is_not_a_job_is_refused(guarded, pool, content, content_type, status):
    await _refused(guarded, pool, status=status, says="", content=content, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/jobs?limit=100000", 422),
        ("/v1/jobs?limit=-1", 422),
        ("/v1/jobs?status=" + "x" * 5000, 422),
        ("/v1/jobs/" + "9" * 5000, 422),
        ("/v1/jobs/00000000-0000-0000-0000-000000000000/result", 404),
        ("/v1/dead-letters?limit=abc", 422),
    ],
)
async def test_bad_query_and_path_parameters_are_refused(guarded, path, status):
    response = await guarded.http.get(path)
    assert response.status_code == status, response.text[:300]
