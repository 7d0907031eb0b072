"""Postgres and the Temporal server stopped during a run, then started again.

Each test runs its own server (a separate embedded Postgres, or a separate Temporal
dev server with its own SQLite file), so stopping it touches no other test.
"""

from __future__ import annotations

import asyncio

import pytest_asyncio

from db.migrate import migrate_dsn
from db.pool import create_pool
from pageperfect.runtime.stack import (
    EmbeddedPostgres,
    TemporalDevServer,
    free_port,
    quiet_platformdirs_warning,
)
from pageperfect.runtime.temporal import connect
from pageperfect.services.reconcile import reconcile
from tests.helpers.data import demo_keywords

JOBS = 6
OUTAGE_SECONDS = 6


@pytest_asyncio.fixture(loop_scope="session")
async def own_postgres(tmp_path):
    quiet_platformdirs_warning()
    pg = await asyncio.to_thread(EmbeddedPostgres(tmp_path / "pg").start)
    await migrate_dsn(pg.dsn)
    pool = await create_pool(pg.dsn, max_size=10)
    yield pg, pool
    await pool.close()
    await asyncio.to_thread(pg.stop)


@pytest_asyncio.fixture(loop_scope="session")
async def own_temporal(tmp_path):
    server = TemporalDevServer(
        port=free_port(), ui_port=free_port(), db_file=tmp_path / "temporal.db", log_file=tmp_path / "temporal.log"
    )
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


def _pages(site, name: str) -> list[str]:
    body = site.handler.routes["/index.html"][2]
    return [site.add(f"/{name}-{i}.html", body) for i in range(JOBS)]


async def _submit_all(pipeline, urls: list[str]) -> list[dict]:
    keywords = demo_keywords()
    return list(await asyncio.gather(*(pipeline.submit(url=url, keywords=keywords) for url in urls)))


async def _running(pool, job_ids: list[str]) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM pageperfect_jobs WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'processing')",
        job_ids,
    )


async def test_postgres_down_and_back_during_a_run(own_postgres, stack_factory, client, temporal_server, site):
    pg, pool = own_postgres
    pipeline = await stack_factory(pool=pool, client=client, temporal_address=temporal_server.address)
    jobs = await _submit_all(pipeline, _pages(site, "pg-outage"))
    job_ids = [j["job_id"] for j in jobs]
    assert await _running(pool, job_ids) > 0  # the outage lands in the middle of the run

    await asyncio.to_thread(pg.pg_ctl, "stop")
    try:
        # The API says what is wrong instead of failing: 503 with the reason.
        response = await pipeline.http.get(f"/v1/jobs/{job_ids[0]}")
        assert response.status_code == 503, response.text
        assert "Postgres" in response.json()["detail"]
        assert (await pipeline.http.get("/healthz")).status_code == 503
        await asyncio.sleep(OUTAGE_SECONDS)
    finally:
        await asyncio.to_thread(pg.pg_ctl, "start")

    finished = [await pipeline.wait(job_id, timeout=180) for job_id in job_ids]
    assert [job["status"] for job in finished] == ["completed"] * JOBS, [j["error"] for j in finished]
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_dead_letters") == 0
    await pipeline.group.writer.flush()
    for job_id in job_ids:
        assert await reconcile(pool, client, job_id=job_id, write=False) == []


async def test_temporal_down_and_back_during_a_run(own_temporal, stack_factory, pool, site):
    own_client = await connect(own_temporal.address)
    # Short stage timeouts: an activity whose completion was lost in the outage is retried in seconds.
    pipeline = await stack_factory(
        pool=pool, client=own_client, temporal_address=own_temporal.address, stage_timeout_scale=0.1
    )
    jobs = await _submit_all(pipeline, _pages(site, "temporal-outage"))
    job_ids = [j["job_id"] for j in jobs]
    assert await _running(pool, job_ids) > 0

    await asyncio.to_thread(own_temporal.stop)
    try:
        refused = await pipeline.http.post("/v1/jobs", json={"url": site.add("/temporal-down.html", "<p>x</p>")})
        assert refused.status_code == 503, refused.text
        assert "Temporal" in refused.json()["detail"]
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM pageperfect_jobs WHERE url = $1", site.base_url + "/temporal-down.html"
            )
            == 0
        )  # nothing half-made
        health = await pipeline.http.get("/healthz")
        assert health.status_code == 503 and health.json()["temporal"] != "ok"
        running = [j for j in job_ids if await _running(pool, [j])]
        if running:
            running = running[0]
            cancel = await pipeline.http.post(f"/v1/jobs/{running}/cancel")
            assert cancel.status_code == 503 and "Temporal" in cancel.json()["detail"], cancel.text
        # Reads come from Postgres and keep working.
        assert (await pipeline.http.get(f"/v1/jobs/{job_ids[0]}")).status_code == 200
        await asyncio.sleep(OUTAGE_SECONDS)
    finally:
        await asyncio.to_thread(own_temporal.start)

    finished = [await pipeline.wait(job_id, timeout=180) for job_id in job_ids]
    assert [job["status"] for job in finished] == ["completed"] * JOBS, [j["error"] for j in finished]
    await pipeline.group.writer.flush()
    for job_id in job_ids:
        assert await reconcile(pool, own_client, job_id=job_id, write=False) == []
