"""Stopping the workers of one task queue pauses that stage: jobs wait in Temporal and go on later."""

from __future__ import annotations

import asyncio
import uuid

from pageperfect.runtime.worker import build_workers
from pageperfect.services.intake import JobRequest, submit_job
from tests.helpers.data import demo_keywords
from tests.helpers.settings import make_settings


async def test_jobs_wait_while_a_queue_has_no_worker(pool, client, temporal_server, site):
    settings = make_settings(temporal_address=temporal_server.address)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    without_compute = await build_workers(
        client, settings, pool, prefix=prefix, queues=("workflow", "crawl", "ai", "control")
    )
    without_compute.start()
    url = site.add("/paused.html", site.handler.routes["/index.html"][2])
    submitted = await submit_job(
        JobRequest(url=url, keywords=demo_keywords()), pool=pool, client=client, settings=settings, queue_prefix=prefix
    )
    try:
        for _ in range(100):  # the job gets as far as the compute stage, then waits there
            stage = await pool.fetchrow(
                "SELECT status FROM pageperfect_job_stages WHERE job_id = $1 AND stage = 'segment_embed'",
                submitted.job_id,
            )
            if stage["status"] == "completed":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        job = await pool.fetchrow("SELECT status FROM pageperfect_jobs WHERE id = $1", submitted.job_id)
        clustering = await pool.fetchrow(
            "SELECT status FROM pageperfect_job_stages WHERE job_id = $1 AND stage = 'keyword_clustering'",
            submitted.job_id,
        )
        assert job["status"] == "processing" and clustering["status"] == "pending"
        backlog = {r["stage"]: r for r in await pool.fetch("SELECT * FROM get_pageperfect_stage_backlog()")}
        assert backlog["keyword_clustering"]["ready"] >= 1

        compute = await build_workers(client, settings, pool, prefix=prefix, queues=("compute",))
        compute.start()
        try:
            handle = client.get_workflow_handle(submitted.workflow_id, run_id=submitted.run_id)
            await asyncio.wait_for(handle.result(), timeout=60)
        finally:
            await compute.shutdown()
    finally:
        await without_compute.shutdown()
    job = await pool.fetchrow("SELECT status FROM pageperfect_jobs WHERE id = $1", submitted.job_id)
    assert job["status"] == "completed"
