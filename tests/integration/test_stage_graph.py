"""Stages start when the stages they come after are done: the query clustering does not wait for the crawl."""

from __future__ import annotations

import asyncio

from tests.helpers.data import demo_keywords
from tests.helpers.faults import GatedCrawler, NeverDoneCrawler
from tests.helpers.polling import until
from tests.openai_server import OpenAIStub
from pageperfect.stages import STAGES


async def _stage_rows(pool, job_id: str) -> dict[str, dict]:
    rows = await pool.fetch("SELECT stage, status, completed_at FROM pageperfect_job_stages WHERE job_id = $1", job_id)
    return {r["stage"]: dict(r) for r in rows}


async def test_clustering_finishes_while_the_crawl_is_held(pipeline_factory, site, pool, client):
    gate = {}

    def wrap(inner):
        gate["crawler"] = GatedCrawler(inner)
        return gate["crawler"]

    pipeline = await pipeline_factory(wrap_crawler=wrap)
    url = site.add("/held-crawl.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords())

    async def clustered() -> bool:
        stages = await _stage_rows(pool, created["job_id"])
        return stages["keyword_clustering"]["status"] == "completed"

    await until(clustered, what="keyword_clustering completed", timeout=30)
    await pipeline.group.writer.flush()
    stages = await _stage_rows(pool, created["job_id"])
    assert stages["submit_crawl"]["status"] == "processing"  # still held at the gate
    assert stages["segment_embed"]["status"] == "pending" and stages["gap_analysis"]["status"] == "pending"
    progress = await client.get_workflow_handle(created["workflow_id"]).query("progress")
    assert progress["current_stage"] == "submit_crawl"  # the first running stage in table order
    job = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}")).json()
    assert job["stage"] == "submit_crawl"  # the job row names the same one

    gate["crawler"].release()
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed"
    stages = await _stage_rows(pool, created["job_id"])
    assert stages["keyword_clustering"]["completed_at"] < stages["submit_crawl"]["completed_at"]
    assert stages["gap_analysis"]["completed_at"] > stages["segment_embed"]["completed_at"]
    result = await client.get_workflow_handle(created["workflow_id"]).result()
    assert list(result["stages"]) == [stage.name for stage in STAGES]  # table order, whatever finished first


async def test_a_failed_stage_cancels_the_stages_still_running(pipeline_factory, site, pool):
    never_done = {}

    def wrap(inner):
        never_done["crawler"] = NeverDoneCrawler(inner)
        return never_done["crawler"]

    with OpenAIStub() as stub:
        pipeline = await pipeline_factory(
            wrap_crawler=wrap, openai_api_key="sk-test-secret", openai_base_url=stub.base_url
        )
        # The queries' embeddings are refused, 2 s after the request: by then wait_crawl is polling.
        stub.script_faults("embeddings", [{"hang": 2, "status": 400}] * 50)
        url = site.add("/refused-embeddings.html", "<p>x</p>")
        created = await pipeline.submit(url=url, keywords=demo_keywords()[:10], max_attempts=1)
        job = await pipeline.wait(created["job_id"])
        assert never_done["crawler"].polls >= 1

    assert job["status"] == "failed"
    letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    assert letter["stage"] == "keyword_clustering"
    stages = {s["stage"]: s for s in job["stages"]}
    assert stages["keyword_clustering"]["status"] == "failed"
    assert stages["wait_crawl"]["status"] == "cancelled"  # the crawl branch was still polling
    assert stages["gap_analysis"]["status"] == "pending"

    polls = never_done["crawler"].polls
    await asyncio.sleep(3)  # past wait_crawl's next poll: the cancelled activity has stopped
    assert never_done["crawler"].polls <= polls + 1
