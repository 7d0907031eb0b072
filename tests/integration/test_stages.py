"""GET /v1/stages: the stage table with each stage's backlog in Postgres and in its Temporal task queue."""

from __future__ import annotations

import asyncio

from tests.helpers.data import demo_keywords, pages
from pageperfect.stages import STAGES


async def test_stages_report_both_backlogs(pipeline_factory, site):
    # No crawl worker: the job's first stage waits in its task queue.
    pipeline = await pipeline_factory(queues=("workflow", "ai", "compute", "control"))
    (url,) = pages(site, "stages-backlog", 1)
    created = await pipeline.submit(url=url, keywords=demo_keywords()[:10])

    deadline = asyncio.get_running_loop().time() + 60
    while True:
        response = await pipeline.http.get("/v1/stages")
        assert response.status_code == 200, response.text
        body = response.json()
        stages = {s["stage"]: s for s in body["stages"]}
        if stages["submit_crawl"]["task_queue"].get("approximate_backlog_count", 0) >= 1:
            break
        assert asyncio.get_running_loop().time() < deadline, stages["submit_crawl"]
        await asyncio.sleep(0.5)

    assert body["queue_prefix"] == pipeline.prefix
    assert [s["stage"] for s in body["stages"]] == [s.name for s in STAGES]
    crawl = stages["submit_crawl"]
    assert crawl["task_queue"]["name"] == f"{pipeline.prefix}-crawl" and crawl["queue_kind"] == "crawl"
    assert crawl["task_queue"]["pollers"] == 0  # nobody serves it
    assert crawl["backlog"]["ready"] >= 1  # the job's stage rows, as the SQL dashboard counts them
    assert stages["segment_embed"]["task_queue"]["name"] == f"{pipeline.prefix}-ai"
    assert stages["segment_embed"]["task_queue"]["pollers"] >= 1
    assert stages["wait_crawl"]["heartbeat_seconds"] == 30 and stages["wait_crawl"]["max_attempts"] >= 1
    kinds = {q["kind"]: q for q in body["queues"]}
    assert set(kinds) == {"workflow", "crawl", "ai", "compute", "control"}
    assert kinds["workflow"]["task_type"] == "workflow" and kinds["workflow"]["pollers"] >= 1

    # Cancelled, the waiting task leaves the queue (the job ends without a crawl worker).
    assert (await pipeline.http.post(f"/v1/jobs/{created['job_id']}/cancel")).status_code == 202
    assert (await pipeline.wait(created["job_id"]))["status"] == "cancelled"
