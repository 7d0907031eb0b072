"""The thin activities in Temporal's ActivityEnvironment: heartbeats, cancels, errors and their rows in Postgres.

Each activity runs as a worker would run it (activity.info(), heartbeats, cancellation), against
the session's real Postgres, without a Temporal server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from datetime import datetime, timedelta, UTC

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import runtime
from activities.batch import batch_job_status
from activities.common import heartbeat_interval, heartbeating, reuse_or_run, run_cpu
from activities.crawl import wait_crawl
from activities.finalize import finalize_job
from activities.search_console import import_search_console
from activities.webhook import send_webhook
from db import queries
from pageperfect.messages import GscImportRequest, WebhookCall
from pageperfect.models import JobInput, JobOutcome, StageInput, StageSummary
from pageperfect.sources.crawl import CrawlResult
from tests.helpers.settings import make_settings


class PollingCrawler:
    """An external crawl that is done on the third poll."""

    name = "polling"

    def __init__(self) -> None:
        self.polls = 0

    async def poll_until_done(self) -> CrawlResult:
        while (result := await self.poll("ticket")) is None:
            pass
        return result

    async def poll(self, ticket_id: str) -> CrawlResult | None:
        self.polls += 1
        if self.polls < 3:
            return None
        return CrawlResult(
            url="https://example.test/p",
            final_url="https://example.test/p",
            status_code=200,
            content_type="text/html",
            encoding="utf-8",
            html="<h1>Fig care</h1>",
            fetched_at=datetime.now(UTC),
            provider=self.name,
            bytes=18,
        )


@pytest_asyncio.fixture(loop_scope="session")
async def installed(pool):
    """The activities' resources in this process: the session's Postgres, a polling crawler, no providers."""
    before = runtime._current
    resources = runtime.Resources(
        settings=make_settings(), pool=pool, crawler=PollingCrawler(), embedder=None, llm=None
    )
    runtime.install(resources)
    yield resources
    runtime._current = before


def environment(heartbeat_timeout: float | None = None) -> tuple[ActivityEnvironment, list]:
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append(details)
    if heartbeat_timeout is not None:
        env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=heartbeat_timeout))
    return env, beats


async def a_job(pool, **fields) -> JobInput:
    url = f"https://example.test/activity/{uuid.uuid4().hex[:8]}"
    page_id = await queries.get_or_create_page(pool, url)
    job = JobInput(job_id=str(uuid.uuid4()), page_id=page_id, url=url, **fields)
    await queries.insert_job(pool, job, {"job": job.model_dump(mode="json")}, f"pageperfect-page-{page_id}")
    return job


async def test_heartbeat_interval_is_a_third_of_the_heartbeat_timeout_within_bounds():
    assert heartbeat_interval(10.0) == 10.0  # outside an activity
    for timeout, longest, expected in [(3.0, 10.0, 1.0), (300.0, 10.0, 10.0), (0.03, 10.0, 0.1)]:
        env, _ = environment(timeout)
        assert env.run(heartbeat_interval, longest) == expected


async def test_heartbeating_beats_while_the_work_runs_and_a_cancel_stops_the_work():
    env, beats = environment(heartbeat_timeout=0.3)  # a beat every 0.1 s
    started, stopped = asyncio.Event(), asyncio.Event()

    async def work():
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    running = asyncio.ensure_future(env.run(heartbeating, work()))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.45)
    assert len(beats) >= 3
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.wait_for(stopped.wait(), 5)  # the work itself was cancelled, not left behind


async def test_run_cpu_runs_off_the_event_loop_and_returns_the_result():
    env, _ = environment(heartbeat_timeout=0.3)
    thread, doubled = await env.run(run_cpu, lambda n: (threading.get_ident(), n * 2), 21)
    assert doubled == 42 and thread != threading.get_ident()


async def test_a_stage_output_is_reused_inside_the_window_and_run_again_when_forced(installed, pool):
    job = await a_job(pool)
    runs = []

    async def run() -> StageSummary:
        runs.append(1)
        return StageSummary(stage="segment_embed", artifact_id=len(runs), counts={"segments": 3})

    env, _ = environment()
    first = await env.run(reuse_or_run, StageInput(job=job), "segment_embed", "key-1", run)
    again = await env.run(reuse_or_run, StageInput(job=job), "segment_embed", "key-1", run)
    forced = await env.run(
        reuse_or_run, StageInput(job=job.model_copy(update={"force_update": True})), "segment_embed", "key-1", run
    )
    other = await env.run(reuse_or_run, StageInput(job=job), "segment_embed", "key-2", run)
    assert (first.status, first.artifact_id, first.info["job_id"]) == ("completed", 1, job.job_id)
    assert (again.status, again.artifact_id, again.info["reused_from_job"]) == ("reused", 1, job.job_id)
    assert (forced.status, forced.artifact_id) == ("completed", 2)
    assert (other.status, other.artifact_id) == ("completed", 3) and len(runs) == 3


async def test_wait_crawl_polls_and_heartbeats_until_the_crawl_is_done(installed, pool):
    job = await a_job(pool)
    crawl_id = await queries.insert_crawl(
        pool, page_id=job.page_id, job_id=job.job_id, provider="polling", requested_url=job.url, external_id="ticket-1"
    )
    env, beats = environment(heartbeat_timeout=0.3)
    summary = await env.run(
        wait_crawl,
        StageInput(
            job=job,
            previous={"submit_crawl": {"stage": "submit_crawl", "status": "completed", "artifact_id": crawl_id}},
        ),
    )
    assert installed.crawler.polls == 3
    assert beats == [({"crawl_id": crawl_id, "waiting": True},)] * 2  # one per poll that found it running
    assert (summary.status, summary.artifact_id, summary.counts["http_status"]) == ("completed", crawl_id, 200)
    stored = await queries.latest_stage_output(pool, job.page_id, "wait_crawl")  # what a skipping job reads
    assert stored["artifact_id"] == crawl_id


async def test_wait_crawl_without_its_crawl_fails_for_good(installed, pool):
    job = await a_job(pool)
    env, _ = environment()
    with pytest.raises(ApplicationError) as err:
        await env.run(wait_crawl, StageInput(job=job, previous={"submit_crawl": {"artifact_id": 2**40}}))
    assert err.value.type == "MissingInput" and err.value.non_retryable


async def _an_earlier_jobs_crawl(pool, job: JobInput) -> int:
    """A crawl another job of the page made and stored as its submit_crawl output, already fetched."""
    crawl_id = await queries.insert_crawl(
        pool, page_id=job.page_id, job_id=job.job_id, provider="polling", requested_url=job.url, external_id="earlier"
    )
    await queries.store_crawl_result(pool, crawl_id, await PollingCrawler().poll_until_done())
    await queries.record_stage_output(
        pool,
        job.page_id,
        "submit_crawl",
        f"earlier-{crawl_id}",
        str(uuid.uuid4()),
        {"stage": "submit_crawl", "artifact_id": crawl_id},
    )
    return crawl_id


async def test_a_stage_reading_what_is_not_among_its_inputs_fails_instead_of_reading_another_jobs(installed, pool):
    """A wrong `after` (wait_crawl given no submit_crawl) fails loudly, although the page has an earlier crawl."""
    job = await a_job(pool)
    await _an_earlier_jobs_crawl(pool, job)
    env, _ = environment()
    with pytest.raises(ApplicationError) as err:
        await env.run(wait_crawl, StageInput(job=job, previous={}))
    assert err.value.type == "MissingInput" and err.value.non_retryable
    assert "reads the output of submit_crawl, which is not among its inputs" in err.value.message
    assert await queries.latest_stage_output(pool, job.page_id, "wait_crawl") is None  # nothing of the earlier job read


async def test_a_stage_the_job_skips_is_read_from_the_pages_latest_output(installed, pool):
    job = await a_job(pool, skip_steps=["submit_crawl"])
    crawl_id = await _an_earlier_jobs_crawl(pool, job)
    env, _ = environment()
    summary = await env.run(wait_crawl, StageInput(job=job, previous={}))
    assert (summary.status, summary.artifact_id) == ("completed", crawl_id)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_finalize_writes_the_ending_and_a_dead_letter_for_a_failure_only(installed, pool, status):
    job = await a_job(pool)
    failed = status == "failed"
    outcome = JobOutcome(
        job=job,
        status=status,
        stage="gap_analysis" if status != "completed" else None,
        failure_reason="BadInput: no clusters" if failed else None,
        error_details="ActivityError <- ApplicationError" if failed else None,
        summaries={"submit_crawl": {"stage": "submit_crawl"}},
        workflow_id="wf",
        run_id=str(uuid.uuid4()),
    )
    env, _ = environment()
    await env.run(finalize_job, outcome)
    await env.run(finalize_job, outcome)  # a retried finalize changes nothing
    row = await queries.get_job(pool, job.job_id)
    assert (row["status"], row["error"], row["run_id"]) == (status, outcome.failure_reason, outcome.run_id)
    assert row["result"] == {"status": status, "stages": outcome.summaries}
    letters = await pool.fetch("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", job.job_id)
    assert len(letters) == (1 if failed else 0)
    if failed:
        assert (letters[0]["failure_reason"], letters[0]["stage"]) == ("BadInput: no clusters", "gap_analysis")


async def test_send_webhook_waits_for_its_secret_and_refuses_an_unknown_job(installed, pool):
    call = WebhookCall(
        url="https://hooks.example.test/",
        kind="job",
        id=str(uuid.uuid4()),
        status="completed",
        occurred_at=datetime.now(UTC),
    )
    env, _ = environment()
    with pytest.raises(ApplicationError) as no_secret:
        await env.run(send_webhook, call)
    assert no_secret.value.type == "WebhookSecretMissing" and not no_secret.value.non_retryable
    installed.settings = make_settings(webhook_secret="s3cret")
    with pytest.raises(ApplicationError) as unknown:
        await env.run(send_webhook, call)
    assert unknown.value.type == "NotFound" and unknown.value.non_retryable


async def test_import_search_console_without_a_key_file_fails_for_good(installed, tmp_path):
    request = GscImportRequest(site_url="sc-domain:example.test", start_date="2026-01-01", end_date="2026-01-28")
    env, _ = environment()
    with pytest.raises(ApplicationError) as unset:
        await env.run(import_search_console, request)
    installed.settings = make_settings(gsc_credentials_file=str(tmp_path / "absent.json"))
    with pytest.raises(ApplicationError) as unreadable:
        await env.run(import_search_console, request)
    assert [e.value.type for e in (unset, unreadable)] == ["MissingCredentials"] * 2
    assert unset.value.non_retryable and "PAGEPERFECT_GSC_CREDENTIALS" in unset.value.message


async def test_batch_job_status_reads_the_row_and_says_gone_for_none(installed, pool):
    job = await a_job(pool)
    env, _ = environment()
    assert await env.run(batch_job_status, job.job_id) == "queued"
    assert await env.run(batch_job_status, str(uuid.uuid4())) == "gone"


class RecordingEmbedder:
    """The offline hashing embedder, remembering every text it was given."""

    def __init__(self) -> None:
        from pageperfect.analysis.embeddings import HashingEmbedder

        self.inner = HashingEmbedder()
        self.name, self.model, self.dim = self.inner.name, self.inner.model, self.inner.dim
        self.seen: list[str] = []

    async def embed(self, texts: list[str]):
        self.seen.extend(texts)
        return await self.inner.embed(texts)


@pytest.mark.parametrize("include", [False, True])
async def test_keyword_clustering_leaves_long_queries_out_unless_asked_and_embeds_their_first_words(
    installed, pool, include
):
    from activities.keyword_clustering import keyword_clustering
    from pageperfect.analysis.long_queries import EMBED_CHARS
    from pageperfect.models import AnalysisOptions, KeywordRow

    prompt = (
        "can you tell me, as someone with a small garden and a modest budget, which shed base lasts longest "
        + " ".join(f"detail{i}" for i in range(300))
    )
    rows = [
        KeywordRow(query=q, clicks=1, impressions=50, ctr=0.02, position=3)
        for q in ("shed base", "concrete shed base", "shed base kit", "log cabin", "log cabin kit", prompt)
    ]
    job = await a_job(pool, options=AnalysisOptions(method="dbscan", include_long_queries=include))
    job = job.model_copy(
        update={"keyword_set_id": await queries.create_keyword_set(pool, job.page_id, rows, source="inline")}
    )
    embedder = RecordingEmbedder()
    before = installed.embedder
    installed.embedder = embedder
    try:
        env, _ = environment()
        summary = await env.run(keyword_clustering, StageInput(job=job))
    finally:
        installed.embedder = before
    cluster_set = await queries.get_cluster_set(pool, summary.artifact_id)
    clustered = {q for c in await queries.get_clusters(pool, summary.artifact_id) for q in c["keywords"]}
    assert summary.counts["long_queries"] == 1 and list(cluster_set["long_queries"]) == [prompt]
    assert cluster_set["long_queries_included"] is include
    assert prompt not in embedder.seen  # never embedded whole
    if include:
        assert summary.counts["keywords"] == 6 and prompt in clustered
        assert any(len(t) <= EMBED_CHARS and prompt.startswith(t) for t in embedder.seen)
    else:
        assert summary.counts["keywords"] == 5 and prompt not in clustered
        assert not any(prompt.startswith(t) and len(t) > 20 for t in embedder.seen)
