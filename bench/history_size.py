"""History size: Temporal history bytes for one job on a 50 KB page and on a 5 MB page.

Pages, segments and embeddings live in Postgres; history carries ids and counts,
so its size should not follow the page's.
"""

from __future__ import annotations

import uuid

from bench.common import figure, ratio, title
from bench.fixtures import keyword_rows, sized_article_html
from bench.jobs import pipeline_job

NAME = "history_size"
NEEDS_STACK = True
QUERIES = 300
LIMIT_BYTES = 64 * 1024
GROWTH_TARGET = 1.10


async def run(quick: bool, stack) -> None:
    keywords = keyword_rows(QUERIES)
    pages = {"h50k": sized_article_html(50_000), "h5m": sized_article_html(5_000_000)}
    for kind, html in pages.items():
        stack.site.add(kind, html)
    title("history size: one job each on a 50 KB and a 5 MB page")
    sizes = {}
    run_id = uuid.uuid4().hex[:6]
    async with stack.workers() as (prefix, settings, _group):
        for kind, html in pages.items():
            finished = await pipeline_job(stack, prefix, settings, stack.site.url(kind, run_id), keywords)
            handle = stack.client.get_workflow_handle(finished.submitted.workflow_id, run_id=finished.submitted.run_id)
            history = await handle.fetch_history()
            sizes[kind] = len(history.to_json())
            segments = finished.result["stages"]["segment_embed"]["counts"]["segments"]
            figure(
                f"{len(html.encode()) / 1e6:5.2f} MB page",
                f"{sizes[kind]:8,d} bytes of history JSON, {len(history.events)} events, "
                f"{segments:.0f} segments, job {finished.seconds:5.1f} s",
            )
    small, large = sizes["h50k"], sizes["h5m"]
    ratio("history_size.small_page_kb", small / 1024, f"< {LIMIT_BYTES // 1024} KB", small < LIMIT_BYTES)
    ratio("history_size.large_page_kb", large / 1024, f"< {LIMIT_BYTES // 1024} KB", large < LIMIT_BYTES)
    ratio("history_size.large_vs_small", large / small, f"<= {GROWTH_TARGET}", large / small <= GROWTH_TARGET)
