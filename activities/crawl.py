"""submit_crawl and wait_crawl: fetch the page through the configured crawl provider."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import artifact_from, fingerprint, heartbeat_interval, permanent, reuse_or_run
from activities.runtime import resources
from db import queries
from pageperfect.sources.crawl import CrawlError
from pageperfect.models import StageInput, StageStatus, StageSummary


def crawl_failure(err: CrawlError) -> ApplicationError:
    retry_after = getattr(err, "retry_after", None)
    return ApplicationError(
        str(err),
        type=err.kind,
        non_retryable=not err.retryable,
        next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
    )


@activity.defn(name="submit_crawl")
async def submit_crawl(inp: StageInput) -> StageSummary:
    res = resources()
    crawler = res.crawler

    async def run() -> StageSummary:
        try:
            ticket = await crawler.submit(inp.job.url)
        except CrawlError as err:
            raise crawl_failure(err) from err
        crawl_id = await queries.insert_crawl(
            res.pool,
            page_id=inp.job.page_id,
            job_id=inp.job.job_id,
            provider=crawler.name,
            requested_url=inp.job.url,
            external_id=ticket.ticket_id,
        )
        if ticket.result is not None:
            await queries.store_crawl_result(res.pool, crawl_id, ticket.result)
        return StageSummary(
            stage="submit_crawl",
            artifact_id=crawl_id,
            info={"provider": crawler.name, "fetched": ticket.result is not None},
            counts={"bytes": ticket.result.bytes if ticket.result else 0},
        )

    return await reuse_or_run(inp, "submit_crawl", fingerprint(crawler.name, inp.job.url), run)


@activity.defn(name="wait_crawl")
async def wait_crawl(inp: StageInput) -> StageSummary:
    """Poll until the crawl is done, heartbeating so a cancel reaches us between polls."""
    res = resources()
    crawl_id = await artifact_from(inp, "submit_crawl")
    delay = 2.0
    while True:
        crawl = await queries.get_crawl(res.pool, crawl_id)
        if crawl is None:
            raise permanent("MissingInput", f"crawl {crawl_id} is not stored")
        if crawl["status"] == "fetched":
            break
        try:
            result = await res.crawler.poll(crawl["external_id"])
        except CrawlError as err:
            raise crawl_failure(err) from err
        if result is not None:
            await queries.store_crawl_result(res.pool, crawl_id, result)
            continue
        activity.heartbeat({"crawl_id": crawl_id, "waiting": True})
        # Polls back off, but never past the heartbeat cadence: a long wait would look like a lost worker.
        delay = min(delay, heartbeat_interval(30.0))
        await asyncio.sleep(delay)
        delay *= 1.5
    reused = inp.previous.get("submit_crawl", {}).get("status") == StageStatus.REUSED
    summary = StageSummary(
        stage="wait_crawl",
        status=StageStatus.REUSED if reused else StageStatus.COMPLETED,
        artifact_id=crawl_id,
        counts={"bytes": crawl["bytes"] or 0, "http_status": crawl["http_status"] or 0},
        info={"final_url": crawl["final_url"], "provider": crawl["provider"], "job_id": inp.job.job_id},
    )
    if not reused:  # what a later job that skips the crawl reads
        await queries.record_stage_output(
            res.pool, inp.job.page_id, "wait_crawl", str(crawl_id), inp.job.job_id, summary.model_dump(mode="json")
        )
    return summary
