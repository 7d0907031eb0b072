"""The moment between a job's final row and its run closing.

A job's row turns final in its run's last activity, a moment before the run closes. A
submission in that moment used to be answered with the finished job, as if it were the
page's running job, and `mirror reconcile` used to set the row back to processing. Here the
moment is held open: the row of a running job is marked completed, as its last activity
would, and the run closes later.
"""

from __future__ import annotations

import asyncio

from tests.helpers.faults import NeverDoneCrawler
from tests.helpers.pipeline import until_stage


async def test_submission_while_the_last_job_closes_starts_a_new_job(pipeline_factory, site, pool, client):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    url = site.add("/resubmit.html", "<p>x</p>")
    first = await pipeline.submit(url=url)
    await until_stage(pipeline, first["job_id"], "wait_crawl")
    await pool.execute("UPDATE pageperfect_jobs SET status = 'completed' WHERE id = $1", first["job_id"])

    async def close_soon():
        await asyncio.sleep(0.5)
        await client.get_workflow_handle(first["workflow_id"], run_id=first["run_id"]).terminate("closing")

    closing = asyncio.create_task(close_soon())
    response = await pipeline.http.post("/v1/jobs", json={"url": url})
    await closing
    assert response.status_code == 202, response.text
    second = response.json()
    assert second["existing"] is False and second["job_id"] != first["job_id"]
    assert second["run_id"] != first["run_id"]
    assert (await pipeline.http.post(f"/v1/jobs/{second['job_id']}/cancel")).status_code == 202
    assert (await pipeline.wait(second["job_id"]))["status"] == "cancelled"


async def test_submission_during_a_running_job_still_gets_that_job(pipeline_factory, site):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    url = site.add("/resubmit-running.html", "<p>x</p>")
    first = await pipeline.submit(url=url)
    response = await pipeline.http.post("/v1/jobs", json={"url": url})
    assert response.status_code == 200 and response.json()["job_id"] == first["job_id"]
    await pipeline.http.post(f"/v1/jobs/{first['job_id']}/cancel")
    assert (await pipeline.wait(first["job_id"]))["status"] == "cancelled"


async def test_reconcile_leaves_a_final_row_of_a_closing_run_alone(pipeline_factory, site, pool, client):
    from pageperfect.services.reconcile import reconcile

    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    url = site.add("/reconcile-closing.html", "<p>x</p>")
    job = await pipeline.submit(url=url)
    await until_stage(pipeline, job["job_id"], "wait_crawl")
    await pipeline.group.writer.flush()
    await pool.execute("UPDATE pageperfect_jobs SET status = 'completed' WHERE id = $1", job["job_id"])
    # Not a difference, and nothing to write: the row is ahead of history by one workflow task.
    assert await reconcile(pool, client, job_id=job["job_id"], write=True) == []
    assert await pool.fetchval("SELECT status FROM pageperfect_jobs WHERE id = $1", job["job_id"]) == "completed"
    await client.get_workflow_handle(job["workflow_id"], run_id=job["run_id"]).terminate("done")
