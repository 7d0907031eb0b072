"""Schemathesis against the live API's OpenAPI schema, over real HTTP.

Generated requests, valid and invalid, to every operation: no answer may be a 5xx,
and every answer must match the schema (documented status code, content type, body
shape, headers). Bounded and seeded so that it is quick and the same on every run.
"""

from __future__ import annotations

import os
import sys

from pageperfect.sources.crawl import CrawlError
from tests.helpers.cli import run_merged

MAX_EXAMPLES = int(os.environ.get("PAGEPERFECT_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


class NoFetching:
    """The generated jobs name arbitrary pages: none of them is fetched, each job fails at once."""

    name = "no-fetching"

    def __init__(self, inner):
        self.inner = inner

    async def submit(self, url: str):
        raise CrawlError("NotFound", f"{url} is not fetched in the schema test", retryable=False)

    async def poll(self, ticket_id: str):
        return None

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_api_holds_to_its_schema_under_generated_requests(pipeline_factory, tmp_path):
    pipeline = await pipeline_factory(wrap_crawler=NoFetching)
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    key = pipeline.http.headers.get("Authorization")
    headers = ["-H", f"Authorization: {key}"] if key else []
    code, text = await run_merged(
        schemathesis,
        "run",
        f"{pipeline.api_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20240601",
        "--generation-database",
        "none",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        *headers,
        cwd=tmp_path,
        timeout=600,
    )
    assert code == 0, text[-20000:]
    assert "passed" in text.lower()
    print(text[-2500:])  # the summary, for -s
