"""Batch intake: check the pages, store them with their keywords, start the batch workflow.

Like a job's intake, it leaves nothing behind when it refuses: a bad URL anywhere in
the list refuses the whole batch (422, naming the lines), before anything is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import ConfigDict, Field
from temporalio.client import Client
from temporalio.service import RPCError

from pageperfect.services.intake import IntakeError, check_webhook_url
from db import queries
from pageperfect.sources.guard import GuardError, parse_allowed_hosts, validate_url
from pageperfect.models import BATCH_PAGE_ENDINGS, JobOptions, KeywordRow
from pageperfect.settings import Settings
from pageperfect.messages import DEFAULT_CONCURRENCY, MAX_BATCH_PAGES, MAX_CONCURRENCY, BatchInput
from workflows.batch import PagePerfectBatchWorkflow, batch_workflow_id
from pageperfect.stages import WORKFLOW_QUEUE, queue_name

MAX_BATCH_KEYWORDS = 200_000


class BatchRequest(JobOptions):
    """POST /v1/batches: one job per page, `concurrency` at a time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "urls": ["https://example.com/blog/a", "https://example.com/blog/b"],
                    "concurrency": 5,
                    "keywords": {
                        "https://example.com/blog/a": [
                            {"query": "shed base", "clicks": 3, "impressions": 420, "ctr": 0.0071, "position": 11.4}
                        ]
                    },
                }
            ]
        },
    )

    urls: list[str] = Field(min_length=1, max_length=MAX_BATCH_PAGES)
    keywords: dict[str, list[KeywordRow]] | None = Field(
        default=None, description="Search Console rows by page URL; pages without any use their latest import"
    )
    concurrency: int = Field(
        default=DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY, description="How many of the batch's jobs run at once"
    )
    webhook_url: str | None = Field(
        default=None, max_length=2048, description="Gets a signed POST when the batch has ended"
    )


@dataclass
class CreatedBatch:
    batch_id: str
    workflow_id: str
    run_id: str
    pages: int
    duplicates: int


def _normalized_pages(urls: list[str], settings: Settings) -> tuple[list[str], int]:
    """The URLs as the crawl will fetch them, duplicates dropped; 422 naming every refused one."""
    allow = parse_allowed_hosts(settings.allowed_hosts)
    pages: list[str] = []
    refused: list[str] = []
    for index, url in enumerate(urls):
        try:
            pages.append(validate_url(url, allow))
        except GuardError as err:
            refused.append(f"urls[{index}] {url[:100]!r}: {err}")
    if refused:
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        raise IntakeError(422, "; ".join(refused[:5]) + more)
    unique = list(dict.fromkeys(pages))
    return unique, len(pages) - len(unique)


@dataclass
class StoredBatch:
    batch_id: str
    workflow_id: str
    pages: list[str]
    duplicates: int
    jobs: JobOptions
    webhook_url: str | None


async def store_batch(
    request: BatchRequest, *, pool: asyncpg.Pool, settings: Settings, source: str = "api", keyword_source: str = "batch"
) -> StoredBatch:
    """The batch's checked pages and keyword sets and its rows, stored; nothing is started (a 4xx stores none)."""
    pages, duplicates = _normalized_pages(request.urls, settings)
    webhook_url = (
        await check_webhook_url(request.webhook_url, parse_allowed_hosts(settings.allowed_hosts))
        if request.webhook_url
        else None
    )
    keywords: dict[str, list[KeywordRow]] = {}
    if request.keywords:
        if sum(len(rows) for rows in request.keywords.values()) > MAX_BATCH_KEYWORDS:
            raise IntakeError(422, f"keywords: more than {MAX_BATCH_KEYWORDS} rows in all")
        allow = parse_allowed_hosts(settings.allowed_hosts)
        for url, rows in request.keywords.items():
            try:
                normalized = validate_url(url, allow)
            except GuardError as err:
                raise IntakeError(422, f"keywords: {url[:100]!r}: {err}") from err
            if normalized not in pages:
                raise IntakeError(422, f"keywords: {url[:100]!r} is not one of the batch's urls")
            keywords.setdefault(normalized, []).extend(rows)

    batch_id = str(uuid.uuid4())
    workflow_id = batch_workflow_id(batch_id)
    jobs = JobOptions.model_validate(request.model_dump(include=set(JobOptions.model_fields)))
    async with queries.transaction(pool) as conn:
        items: list[tuple[str, int | None, str | None]] = []
        for url in pages:
            set_id = None
            if keywords.get(url):
                page_id = await queries.get_or_create_page(conn, url)
                set_id = await queries.create_keyword_set(conn, page_id, keywords[url], source=keyword_source)
            items.append((url, set_id, None))
        await queries.insert_batch(
            conn,
            batch_id,
            source=source,
            concurrency=request.concurrency,
            options=jobs.model_dump(mode="json"),
            webhook_url=webhook_url,
            workflow_id=workflow_id,
            run_id=None,
            items=items,
        )
    return StoredBatch(batch_id, workflow_id, pages, duplicates, jobs, webhook_url)


async def start_or_undo(
    client: Client,
    run: Any,
    arg: Any,
    workflow_id: str,
    prefix: str,
    what: str,
    undo: Callable[[], Awaitable[None]],
) -> str:
    """Start the workflow on the workflow queue and return its run id; when Temporal does not take it,
    `undo` removes what was stored for it and the caller gets a 503 (nothing was created)."""
    try:
        handle = await client.start_workflow(run, arg, id=workflow_id, task_queue=queue_name(prefix, WORKFLOW_QUEUE))
    except RPCError as err:
        await undo()
        raise IntakeError(
            503, f"Temporal did not take the {what} ({err.message}); nothing was created, try again"
        ) from err
    return handle.result_run_id or ""


async def create_batch(
    request: BatchRequest,
    *,
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    queue_prefix: str | None = None,
    source: str = "api",
) -> CreatedBatch:
    stored = await store_batch(request, pool=pool, settings=settings, source=source)
    batch_id, workflow_id = stored.batch_id, stored.workflow_id
    prefix = queue_prefix or settings.queue_prefix
    batch = BatchInput(
        batch_id=batch_id,
        concurrency=request.concurrency,
        jobs=stored.jobs,
        webhook_url=stored.webhook_url,
        source=source,
        queue_prefix=prefix,
        poll_seconds=settings.batch_poll_seconds,
    )

    async def undo() -> None:
        await queries.delete_batch(pool, batch_id)

    run_id = await start_or_undo(client, PagePerfectBatchWorkflow.run, batch, workflow_id, prefix, "batch", undo)
    await queries.set_batch_run(pool, batch_id, workflow_id, run_id)
    return CreatedBatch(batch_id, workflow_id, run_id, len(stored.pages), stored.duplicates)


async def batch_status(pool: asyncpg.Pool, batch_id: str, *, items: bool = True) -> dict | None:
    """The batch and its pages counted by where they are, from Postgres."""
    batch = await queries.get_batch(pool, batch_id)
    if batch is None:
        return None
    counts = await queries.batch_counts(pool, batch_id)
    ended = sum(counts[k] for k in BATCH_PAGE_ENDINGS)
    body = {
        "batch_id": str(batch["id"]),
        "status": batch["status"],
        "source": batch["source"],
        "total": batch["total"],
        "ended": ended,
        "counts": counts,
        "concurrency": batch["concurrency"],
        "options": batch["options"],
        "webhook_url": batch["webhook_url"],
        "workflow_id": batch["workflow_id"],
        "run_id": batch["run_id"],
        "created_at": batch["created_at"],
        "completed_at": batch["completed_at"],
    }
    if items:
        body["pages"] = [
            {
                "position": r["position"],
                "url": r["url"],
                "job_id": str(r["job_id"]) if r["job_id"] else None,
                "status": r["status"],
                "existing": r["existing"],
                "stage": r["stage"],
                "error": r["error"] or r["job_error"],
            }
            for r in await queries.batch_items(pool, batch_id)
        ]
    return body
