"""The mirror: idempotent writes, forward-only rows, and reconcile from history."""

from __future__ import annotations

from datetime import datetime, UTC

from db import queries
from pageperfect.services.reconcile import reconcile
from tests.helpers.data import demo_keywords


async def test_reconcile_rebuilds_lost_rows(pipeline, site, pool, client):
    url = site.add("/reconcile.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords())
    job_id = created["job_id"]
    assert (await pipeline.wait(job_id))["status"] == "completed"
    assert await reconcile(pool, client, job_id=job_id, write=False) == []

    # What a long Postgres outage could leave: rows that never caught up.
    await pool.execute(
        "DELETE FROM pageperfect_job_stages WHERE job_id = $1 AND stage IN ('gap_analysis', 'rewrite_draft')", job_id
    )
    await pool.execute(
        "UPDATE pageperfect_job_stages SET status = 'processing' WHERE job_id = $1 AND stage = 'segment_embed'", job_id
    )
    await pool.execute("UPDATE pageperfect_jobs SET status = 'processing', completed_at = NULL WHERE id = $1", job_id)
    differences = await reconcile(pool, client, job_id=job_id, write=False)
    assert len(differences) == 4, differences
    assert await reconcile(pool, client, job_id=job_id, write=True)
    assert await reconcile(pool, client, job_id=job_id, write=False) == []
    rows = {r["stage"]: r for r in await queries.get_job_stages(pool, job_id)}
    assert all(r["status"] == "completed" for r in rows.values())
    assert (await queries.get_job(pool, job_id))["status"] == "completed"


async def test_mirror_writes_are_idempotent_and_move_forward_only(pipeline, site, pool):
    url = site.add("/mirror-order.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords())
    job_id = created["job_id"]
    await pipeline.wait(job_id)
    before = await pool.fetchval("SELECT count(*) FROM pageperfect_job_events WHERE job_id = $1", job_id)
    event = await pool.fetchrow("SELECT * FROM pageperfect_job_events WHERE job_id = $1 ORDER BY id LIMIT 1", job_id)
    # A duplicate delivery of the same event inserts nothing.
    await queries.mirror_event(
        pool,
        job_id=job_id,
        stage=event["stage"],
        status=event["status"],
        message="again",
        metadata={},
        workflow_id=event["workflow_id"],
        run_id=event["run_id"],
        activity_id=event["activity_id"],
        attempt=event["attempt"],
    )
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_job_events WHERE job_id = $1", job_id) == before
    # A late write of an older attempt, or of an earlier status, never regresses a row.
    await queries.mirror_stage(
        pool,
        job_id=job_id,
        stage="gap_analysis",
        status="processing",
        attempt=1,
        max_attempts=4,
        started_at=datetime.now(UTC),
    )
    await queries.mirror_stage(pool, job_id=job_id, stage="gap_analysis", status="retrying", attempt=0, max_attempts=4)
    row = await pool.fetchrow(
        "SELECT * FROM pageperfect_job_stages WHERE job_id = $1 AND stage = 'gap_analysis'", job_id
    )
    assert row["status"] == "completed" and row["attempt_count"] == 1
