"""Retries, dead letters, redrive, cancellation and one running job per page."""

from __future__ import annotations

import asyncio
import subprocess

from pageperfect.models import JobStatus
from tests.helpers.cli import temporal_workflow
from tests.helpers.data import demo_keywords
from tests.helpers.faults import FlakyCrawler, NeverDoneCrawler
from tests.helpers.pipeline import until_stage
from tests.openai_server import OpenAIStub


async def test_stage_fails_twice_then_succeeds(pipeline_factory, site, pool):
    flaky = {}

    def wrap(inner):
        flaky["crawler"] = FlakyCrawler(inner, failures=2)
        return flaky["crawler"]

    pipeline = await pipeline_factory(wrap_crawler=wrap)
    url = site.add("/flaky.html", (site.handler.routes["/index.html"][2]))
    created = await pipeline.submit(url=url, keywords=demo_keywords()[:10], retry_delay_seconds=0.2)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed"
    crawl = next(s for s in job["stages"] if s["stage"] == "submit_crawl")
    assert crawl["attempt_count"] == 3 and crawl["status"] == "completed"
    assert "injected 503 number 2" in crawl["last_error"]
    events = await pool.fetch(
        "SELECT status, attempt FROM pageperfect_job_events WHERE job_id = $1 AND stage = 'submit_crawl' ORDER BY id",
        created["job_id"],
    )
    assert [(e["status"], e["attempt"]) for e in events] == [
        ("processing", 1),
        ("retrying", 1),
        ("processing", 2),
        ("retrying", 2),
        ("processing", 3),
        ("completed", 3),
    ]
    assert flaky["crawler"].calls == 3


async def test_retries_exhausted_land_in_dead_letters(pipeline_factory, site, pool):
    pipeline = await pipeline_factory(wrap_crawler=lambda inner: FlakyCrawler(inner, failures=100))
    url = site.add("/always-down.html", "<html><body><p>never fetched</p></body></html>")
    created = await pipeline.submit(url=url, max_attempts=2, retry_delay_seconds=0.1)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "failed" and "HttpError" in job["error"]
    letters = await pool.fetch("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    assert len(letters) == 1
    letter = letters[0]
    assert letter["stage"] == "submit_crawl" and letter["attempt_count"] == 2
    assert "injected 503" in letter["failure_reason"] and letter["run_id"] == created["run_id"]
    assert letter["payload"]["url"] == url
    stage = next(s for s in job["stages"] if s["stage"] == "submit_crawl")
    assert stage["status"] == "failed" and stage["attempt_count"] == 2


async def test_non_retryable_error_dead_letters_at_once(pipeline, site, pool):
    created = await pipeline.submit(url=site.base_url + "/no-such-page.html", retry_delay_seconds=0.1)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "failed"
    letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    assert letter["failure_reason"].startswith("NotFound") and letter["attempt_count"] == 1


async def test_redrive_reuses_completed_stages(pipeline_factory, site, pool, client):
    from pageperfect.services.redrive import redrive

    with OpenAIStub() as stub:
        pipeline = await pipeline_factory(openai_api_key="sk-test-secret", openai_base_url=stub.base_url)
        stub.script_faults("chat/completions", [500] * 20)
        url = site.add("/redrive.html", site.handler.routes["/index.html"][2])
        created = await pipeline.submit(url=url, keywords=demo_keywords(), max_attempts=1)
        job = await pipeline.wait(created["job_id"])
        assert job["status"] == "failed" and job["stage"] == "rewrite_draft"
        letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
        assert letter is not None
        stub.script_faults("chat/completions", [])  # the LLM is back
        stub._faults["chat/completions"].clear()
        embeddings_before = stub.requests["embeddings"]

        submitted = await redrive(letter["id"], pool=pool, client=client)
        job = await pipeline.wait(submitted.job_id)
        assert job["status"] == "completed"
        reused = {s["stage"]: s["reused"] for s in job["stages"]}
        assert reused == {
            "submit_crawl": True,
            "wait_crawl": False,
            "segment_embed": True,
            "keyword_clustering": True,
            "gap_analysis": True,
            "rewrite_draft": False,
        } or all(reused[s] for s in ("submit_crawl", "segment_embed", "keyword_clustering", "gap_analysis"))
        assert not reused["rewrite_draft"]
        assert stub.requests["embeddings"] == embeddings_before  # nothing embedded twice
        result = (await pipeline.http.get(f"/v1/jobs/{submitted.job_id}/result")).json()
        assert result["drafts"] and all(d["kind"] == "draft" for d in result["drafts"])
        assert result["providers"]["offline"] is False
        marked = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE id = $1", letter["id"])
        assert str(marked["redrive_job_id"]) == submitted.job_id


async def test_cancel_through_api(pipeline_factory, site, pool):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    url = site.add("/cancel-api.html", "<p>x</p>")
    created = await pipeline.submit(url=url)
    await pipeline.wait(created["job_id"], statuses=("processing",))
    await until_stage(pipeline, created["job_id"], "wait_crawl")
    response = await pipeline.http.post(f"/v1/jobs/{created['job_id']}/cancel")
    assert response.status_code == 202, response.text
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "cancelled"
    assert (
        await pool.fetchval("SELECT count(*) FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"]) == 0
    )
    again = await pipeline.http.post(f"/v1/jobs/{created['job_id']}/cancel")
    assert again.status_code == 409


async def test_cancel_through_temporal_cli(pipeline_factory, site, pool, temporal_server):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    url = site.add("/cancel-cli.html", "<p>x</p>")
    created = await pipeline.submit(url=url)
    await until_stage(pipeline, created["job_id"], "wait_crawl")
    done = await asyncio.to_thread(
        subprocess.run,
        temporal_workflow("cancel", temporal_server.address, created),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "cancelled"
    wait_stage = next(s for s in job["stages"] if s["stage"] == "wait_crawl")
    assert wait_stage["status"] == "cancelled"
    assert (
        await pool.fetchval("SELECT count(*) FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"]) == 0
    )


async def test_second_submission_returns_running_job(pipeline_factory, site, pool):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    url = site.add("/dedupe.html", "<p>x</p>")
    first = await pipeline.submit(url=url)
    second = await pipeline.submit(url=url)
    assert second["job_id"] == first["job_id"] and second["existing"] is True
    assert second["status"] in (JobStatus.QUEUED, JobStatus.PROCESSING)  # the running job's own status
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_jobs WHERE url = $1", url) == 1
    await pipeline.http.post(f"/v1/jobs/{first['job_id']}/cancel")
    assert (await pipeline.wait(first["job_id"]))["status"] == "cancelled"
