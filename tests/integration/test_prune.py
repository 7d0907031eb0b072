"""Retention on the real Postgres: what `pageperfect prune` deletes and keeps, and that --dry-run deletes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import numpy as np

from db import queries
from pageperfect.models import JobInput
from pageperfect.ops.prune import prune
from tests.helpers.data import demo_keywords
from tests.helpers.settings import REPO

ARTIFACTS = ("crawls", "segment_sets", "cluster_sets", "gap_reports", "draft_sets", "keyword_sets", "stage_outputs")
OLD = "now() - interval '40 days'"


async def rows_of(pool, page_ids: list[int]) -> dict[str, int]:
    """Artifact rows of these pages, and the vectors and job rows that come with them."""
    counts = {
        table: await pool.fetchval(f"SELECT count(*) FROM {table} WHERE page_id = ANY($1::bigint[])", page_ids)
        for table in ARTIFACTS
    }
    counts["segments"] = await pool.fetchval(
        "SELECT count(*) FROM segments s JOIN segment_sets ss ON ss.id = s.segment_set_id "
        "WHERE ss.page_id = ANY($1::bigint[])",
        page_ids,
    )
    counts["jobs"] = await pool.fetchval(
        "SELECT count(*) FROM pageperfect_jobs WHERE page_id = ANY($1::bigint[])", page_ids
    )
    return counts


async def of_job(pool, job_id: str) -> dict[str, int]:
    return {
        table: await pool.fetchval(f"SELECT count(*) FROM {table} WHERE job_id = $1", job_id)
        for table in ("crawls", "segment_sets", "cluster_sets", "gap_reports", "draft_sets")
    }


async def age(pool, page_ids: list[int]) -> None:
    """Make everything these pages have 40 days old."""
    for table in ARTIFACTS:
        await pool.execute(f"UPDATE {table} SET created_at = {OLD} WHERE page_id = ANY($1::bigint[])", page_ids)


async def test_prune_keeps_each_pages_latest_and_busy_pages_and_a_dry_run_deletes_nothing(
    pipeline, site, pool, postgres_dsn
):
    body = site.handler.routes["/index.html"][2]
    urls = {name: site.add(f"/prune-{name}-{uuid.uuid4().hex[:6]}.html", body) for name in ("twice", "once", "busy")}
    run = {}
    for name, url in [
        ("first", urls["twice"]),
        ("second", urls["twice"]),
        ("once", urls["once"]),
        ("busy", urls["busy"]),
    ]:
        created = await pipeline.submit(url=url, keywords=demo_keywords(), force_update=True)
        run[name] = await pipeline.wait(created["job_id"])
        assert run[name]["status"] == "completed"
    pages = {name: run[key]["page_id"] for name, key in (("twice", "first"), ("once", "once"), ("busy", "busy"))}
    # The busy page has a job that has not ended (a row is all prune reads).
    waiting = JobInput(job_id=str(uuid.uuid4()), page_id=pages["busy"], url=urls["busy"])
    await queries.insert_job(pool, waiting, {}, f"pageperfect-page-{pages['busy']}")
    await age(pool, list(pages.values()))
    # Embedding cache rows: one nobody has read for 40 days, one read just now.
    model = f"prune-{uuid.uuid4().hex[:6]}"
    cache = queries.PostgresEmbeddingCache(pool)
    await cache.put_many("test", model, {"old": np.ones(3, dtype=np.float32), "read": np.ones(3, dtype=np.float32)})
    await pool.execute(f"UPDATE embedding_cache SET used_at = {OLD} WHERE model = $1", model)
    assert set(await cache.get_many("test", model, ["read"])) == {"read"}  # a read moves used_at on

    before = await rows_of(pool, list(pages.values()))
    dry = await prune(pool, older_than_days=30, dry_run=True)
    assert await rows_of(pool, list(pages.values())) == before  # nothing deleted
    assert await pool.fetchval("SELECT count(*) FROM embedding_cache WHERE model = $1", model) == 2
    assert dry.dry_run and dry.removed["crawls"] >= 1 and dry.removed["segments"] >= 1
    assert dry.removed["embedding_cache"] >= 1

    done = await prune(pool, older_than_days=30)
    assert done.removed == dry.removed  # the dry run counted exactly what goes
    after = await rows_of(pool, list(pages.values()))
    # The page analyzed twice loses its first job's artifacts and keeps its second's.
    assert set((await of_job(pool, run["first"]["job_id"])).values()) == {0}
    assert set((await of_job(pool, run["second"]["job_id"])).values()) == {1}
    assert set((await of_job(pool, run["once"]["job_id"])).values()) == {1}  # its page's latest
    assert set((await of_job(pool, run["busy"]["job_id"])).values()) == {1}  # its page has a job running
    assert after["jobs"] == before["jobs"]  # job rows stay for the dashboards
    assert after["segments"] < before["segments"] and after["keyword_sets"] == before["keyword_sets"] - 1
    assert await pool.fetchval("SELECT count(*) FROM stage_outputs WHERE page_id = $1", pages["twice"]) == 6
    assert {
        r["text_hash"] for r in await pool.fetch("SELECT text_hash FROM embedding_cache WHERE model = $1", model)
    } == {"read"}
    # What stays is whole: the second job's result reads back, and a job that skips the crawl reads the kept one.
    result = (await pipeline.http.get(f"/v1/jobs/{run['second']['job_id']}/result")).json()
    assert result["stats"]["segments"] > 0
    pruned = await pipeline.http.get(f"/v1/jobs/{run['first']['job_id']}/result")
    assert pruned.status_code == 200 and pruned.json()["gaps"] == []  # what is left of it, not an error
    skipping = await pipeline.submit(
        url=urls["twice"], keywords=demo_keywords(), force_update=True, skip_steps=["submit_crawl", "wait_crawl"]
    )
    assert (await pipeline.wait(skipping["job_id"]))["status"] == "completed"
    # Now the second job's artifacts are no longer the page's latest and go, but for its crawl: the new job's
    # segments were made from it.
    again = await prune(pool, older_than_days=30)
    assert (again.removed["segment_sets"], again.removed["draft_sets"], again.removed["crawls"]) == (1, 1, 0)
    assert await of_job(pool, run["second"]["job_id"]) == {
        "crawls": 1,
        "segment_sets": 0,
        "cluster_sets": 0,
        "gap_reports": 0,
        "draft_sets": 0,
    }


async def test_the_prune_command_reports_a_dry_run_and_refuses_negative_days(postgres_dsn, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAGEPERFECT_")},
        "DATABASE_URL": postgres_dsn,
        "PAGEPERFECT_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pageperfect.cli", "prune", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    dry = await asyncio.to_thread(cli, "--older-than", "3650", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stdout and "dry run: nothing was deleted" in dry.stdout and "crawls" in dry.stdout
    negative = await asyncio.to_thread(cli, "--older-than", "-1")
    assert negative.returncode == 2 and "greater than or equal to 0" in negative.stderr
