"""Load: many jobs submitted as fast as the API takes them, offline providers, one page each.

All complete; the mirror's counts by status equal Temporal's (visibility, by task queue);
no dead letters; the API never answers 5xx. The suite runs LOAD_JOBS (default 100);
the figures in docs/RELIABILITY.md come from

    PAGEPERFECT_LOAD_JOBS=500 pytest -q -s -p no:cacheprovider tests/reliability/test_load.py
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from tests.helpers.data import demo_keywords

LOAD_JOBS = int(os.environ.get("PAGEPERFECT_LOAD_JOBS", "100"))
IN_FLIGHT = 32  # submissions open at once: more than the API's pool, so requests queue in it
FINAL = ("completed", "failed", "cancelled")
TEMPORAL_STATUS = {"completed": "Completed", "failed": "Failed", "cancelled": "Canceled"}


async def test_many_jobs_complete_and_counts_agree(pipeline, site, pool, client):
    body = site.handler.routes["/index.html"][2]
    urls = [site.add(f"/load/{i}.html", body) for i in range(LOAD_JOBS)]
    keywords = demo_keywords()
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def submit(url: str) -> str:
        async with gate:
            response = await pipeline.http.post("/v1/jobs", json={"url": url, "keywords": keywords})
        statuses[response.status_code] += 1
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    job_ids = list(await asyncio.gather(*(submit(url) for url in urls)))
    submitted_in = loop.time() - started
    assert len(set(job_ids)) == LOAD_JOBS

    # A hang guard, not a speed figure (bench/ measures throughput): generous for a loaded 2-core machine.
    deadline = started + max(600.0, LOAD_JOBS * 3.0)
    while (
        await pool.fetchval(
            "SELECT count(*) FROM pageperfect_jobs WHERE id = ANY($1::uuid[]) AND status = ANY($2)",
            job_ids,
            list(FINAL),
        )
        < LOAD_JOBS
    ):
        assert loop.time() < deadline, "jobs still running at the deadline"
        probe = await pipeline.http.get(f"/v1/jobs/{job_ids[-1]}")  # the API keeps answering meanwhile
        statuses[probe.status_code] += 1
        await asyncio.sleep(0.5)
    await pipeline.group.writer.flush()

    for job_id in job_ids:
        response = await pipeline.http.get(f"/v1/jobs/{job_id}")
        statuses[response.status_code] += 1
        assert response.json()["status"] == "completed", response.json()
    assert not [code for code in statuses if code >= 500], statuses

    mirror = dict(
        await pool.fetch(
            "SELECT status, count(*) FROM pageperfect_jobs WHERE id = ANY($1::uuid[]) GROUP BY status", job_ids
        )
    )
    assert mirror == {"completed": LOAD_JOBS}
    assert await temporal_counts(client, pipeline.prefix, mirror) == {TEMPORAL_STATUS[k]: v for k, v in mirror.items()}
    assert (
        await pool.fetchval("SELECT count(*) FROM pageperfect_dead_letters WHERE job_id = ANY($1::uuid[])", job_ids)
        == 0
    )
    stage_rows = await pool.fetchval(
        "SELECT count(*) FROM pageperfect_job_stages WHERE job_id = ANY($1::uuid[]) AND status = 'completed'", job_ids
    )
    assert stage_rows == 6 * LOAD_JOBS

    span = await pool.fetchrow(
        """SELECT extract(epoch FROM max(completed_at) - min(created_at)) AS total,
                  extract(epoch FROM max(completed_at - created_at)) AS slowest,
                  extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY completed_at - created_at)) AS median
           FROM pageperfect_jobs WHERE id = ANY($1::uuid[])""",
        job_ids,
    )
    print(
        f"\nload: {LOAD_JOBS} jobs, submitted in {submitted_in:.1f} s ({LOAD_JOBS / submitted_in:.1f}/s), "
        f"all done in {span['total']:.1f} s = {LOAD_JOBS / float(span['total']):.2f} jobs/s; "
        f"median job {float(span['median']):.1f} s, slowest {float(span['slowest']):.1f} s; "
        f"API answers {dict(statuses)}"
    )


async def temporal_counts(client, prefix: str, expected_mirror: dict, timeout: float = 30.0) -> dict:
    """Temporal's workflow counts by status on the job's task queue (visibility catches up shortly)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        counts = {}
        for status in ("Running", "Completed", "Failed", "Canceled", "Terminated", "TimedOut"):
            found = await client.count_workflows(f"TaskQueue = '{prefix}-workflow' AND ExecutionStatus = '{status}'")
            if found.count:
                counts[status] = found.count
        wanted = {TEMPORAL_STATUS[k]: v for k, v in expected_mirror.items()}
        if counts == wanted or asyncio.get_running_loop().time() > deadline:
            return counts
        await asyncio.sleep(0.5)
