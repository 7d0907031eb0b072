"""Reuse inside the window, skip_steps, and replay of a fresh run (kept histories: tests/workflows/test_replay.py)."""

from __future__ import annotations

import subprocess

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from pageperfect.runtime.temporal import data_converter
from pageperfect.runtime.worker import worker_interceptors
from tests.helpers.cli import temporal_workflow
from tests.helpers.data import demo_keywords
from tests.helpers.settings import make_settings
from workflows.pageperfect import PagePerfectWorkflow


def _page(site, name: str) -> str:
    return site.add(f"/{name}.html", site.handler.routes["/index.html"][2])


async def test_second_job_reuses_and_force_update_runs_again(pipeline, site):
    url = _page(site, "reuse")
    first = await pipeline.wait((await pipeline.submit(url=url, keywords=demo_keywords()))["job_id"])
    second = await pipeline.wait((await pipeline.submit(url=url, keywords=demo_keywords()))["job_id"])
    assert first["status"] == second["status"] == "completed"
    assert not any(s["reused"] for s in first["stages"])
    assert all(s["reused"] for s in second["stages"] if s["stage"] != "wait_crawl")
    hits = site.hits("/reuse.html")
    forced = await pipeline.wait(
        (await pipeline.submit(url=url, keywords=demo_keywords(), force_update=True))["job_id"]
    )
    assert forced["status"] == "completed" and not any(s["reused"] for s in forced["stages"])
    assert site.hits("/reuse.html") == hits + 1
    # New keywords are new inputs: clustering runs again even inside the window.
    changed = await pipeline.wait((await pipeline.submit(url=url, keywords=demo_keywords()[:20]))["job_id"])
    stages = {s["stage"]: s for s in changed["stages"]}
    assert stages["segment_embed"]["reused"] and not stages["keyword_clustering"]["reused"]


async def test_skip_steps_read_what_an_earlier_job_stored(pipeline, site):
    url = _page(site, "skip")
    first = await pipeline.wait((await pipeline.submit(url=url, keywords=demo_keywords()))["job_id"])
    assert first["status"] == "completed"
    hits = site.hits("/skip.html")
    created = await pipeline.submit(
        url=url, keywords=demo_keywords(), force_update=True, skip_steps=["submit_crawl", "wait_crawl"]
    )
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed"
    stages = {s["stage"]: s["status"] for s in job["stages"]}
    assert stages["submit_crawl"] == stages["wait_crawl"] == "skipped"
    assert stages["segment_embed"] == "completed"
    assert site.hits("/skip.html") == hits  # not fetched again
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["stats"]["segments"] > 0


async def test_skipping_a_stage_never_run_dead_letters_with_reason(pipeline, site, pool):
    url = _page(site, "skip-nothing-stored")
    created = await pipeline.submit(url=url, skip_steps=["submit_crawl", "wait_crawl"])
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "failed"
    letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    assert letter["failure_reason"].startswith("MissingInput") and "run it once first" in letter["failure_reason"]


async def test_progress_query_and_tune_update(pipeline, site, client):
    url = _page(site, "progress")
    created = await pipeline.submit(url=url, keywords=demo_keywords())
    await pipeline.wait(created["job_id"])
    handle = client.get_workflow_handle(created["workflow_id"], run_id=created["run_id"])
    progress = await handle.query(PagePerfectWorkflow.progress)
    assert progress.status == "completed" and [s.status for s in progress.stages] == ["completed"] * 6


def _replayer(settings=None) -> Replayer:
    # The same converter and interceptors as the worker (the mirror intercepts activities only).
    return Replayer(
        workflows=[PagePerfectWorkflow],
        data_converter=data_converter(settings or make_settings()),
        interceptors=worker_interceptors(None),
    )


async def test_fresh_history_replays(pipeline, site, client, temporal_server, tmp_path):
    url = _page(site, "replay")
    created = await pipeline.submit(url=url, keywords=demo_keywords())
    assert (await pipeline.wait(created["job_id"]))["status"] == "completed"
    handle = client.get_workflow_handle(created["workflow_id"], run_id=created["run_id"])
    await _replayer().replay_workflow(await handle.fetch_history())
    # And through the CLI's JSON export, as operators keep them.
    shown = subprocess.run(
        temporal_workflow("show", temporal_server.address, created, "--output", "json"),
        capture_output=True,
        text=True,
        check=True,
    )
    history = WorkflowHistory.from_json(created["workflow_id"], shown.stdout)
    await _replayer().replay_workflow(history)
