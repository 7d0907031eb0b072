"""Jobs for the pipeline benchmarks: through Temporal (the intake's submit_job), or all in one process."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from temporalio.testing import ActivityEnvironment

from activities.finalize import finalize_job
from activities.registry import ACTIVITIES
from pageperfect.services.intake import JobRequest, Submitted, check_url, submit_job
from db import queries
from pageperfect.sources.guard import parse_allowed_hosts
from pageperfect.models import JobInput, JobOutcome, KeywordRow, StageInput
from pageperfect.settings import Settings
from pageperfect.stages import STAGES


@dataclass
class Finished:
    submitted: Submitted | None
    result: dict
    seconds: float


async def pipeline_job(stack, prefix: str, settings: Settings, url: str, keywords: list[dict]) -> Finished:
    """One job through the intake, Temporal and the workers; timed from submit to the workflow's result."""
    started = time.perf_counter()
    request = JobRequest(url=url, keywords=[KeywordRow(**k) for k in keywords])
    submitted = await submit_job(request, pool=stack.pool, client=stack.client, settings=settings, queue_prefix=prefix)
    if submitted.existing:
        raise RuntimeError(f"{url} already had a running job: every benchmark job needs its own page")
    handle = stack.client.get_workflow_handle(submitted.workflow_id, run_id=submitted.run_id)
    result = await handle.result()
    if result.get("status") != "completed":
        raise RuntimeError(f"job {submitted.job_id} ended {result}")
    return Finished(submitted, result, time.perf_counter() - started)


async def monolith_job(stack, settings: Settings, url: str, keywords: list[dict]) -> Finished:
    """The same job with no Temporal: the intake's stores, then the six stage functions and finalize in turn.

    Each activity runs in temporalio's ActivityEnvironment, which gives it an activity
    context (heartbeats go nowhere) without a server, a worker or a task queue.
    """
    started = time.perf_counter()
    pool = stack.pool
    url = await check_url(url, parse_allowed_hosts(settings.allowed_hosts))
    page_id = await queries.get_or_create_page(pool, url)
    rows = [KeywordRow(**k) for k in keywords]
    job_id = str(uuid.uuid4())
    async with pool.acquire() as conn:
        keyword_set_id = await queries.create_keyword_set(conn, page_id, rows, source="inline")
        job = JobInput(
            job_id=job_id,
            page_id=page_id,
            url=url,
            queue_prefix="monolith",
            keyword_set_id=keyword_set_id,
            reuse_window_seconds=settings.reuse_window_seconds,
        )
        await queries.insert_job(conn, job, {"url": url, "keyword_count": len(rows)}, f"monolith-{job_id}")
    env = ActivityEnvironment()
    summaries: dict[str, dict] = {}
    for stage in STAGES:
        summary = await env.run(ACTIVITIES[stage.name], StageInput(job=job, previous=summaries))
        summaries[stage.name] = summary.model_dump(mode="json")
    await env.run(
        finalize_job, JobOutcome(job=job, status="completed", summaries=summaries, workflow_id=f"monolith-{job_id}")
    )
    return Finished(None, {"status": "completed", "stages": summaries}, time.perf_counter() - started)


async def many(count: int, make, *, limit: int | None = None) -> float:
    """Runs make(i) for i in range(count) concurrently (at most `limit` at once); returns the wall time."""
    semaphore = asyncio.Semaphore(limit or count)

    async def one(i: int):
        async with semaphore:
            return await make(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started
