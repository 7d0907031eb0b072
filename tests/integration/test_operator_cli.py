"""The operator's commands as a user runs them: analyze (and Ctrl-C), jobs tune, replay."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import sys
from pathlib import Path

from pageperfect.runtime.stack import free_port
from tests.helpers.cli import cli_env, run_cli
from tests.helpers.data import demo_keywords
from tests.helpers.faults import GatedCrawler, NeverDoneCrawler
from tests.helpers.polling import until
from tests.helpers.settings import DEMO, REPO

KEPT_HISTORY = REPO / "tests" / "histories" / "demo-completed.json"
JOB_LINE = re.compile(r"job ([0-9a-f-]{36}) for ")


def _page(site, name: str) -> str:
    return site.add(f"/{name}.html", site.handler.routes["/index.html"][2])


async def _stage_status(pipeline, job_id: str, stage: str) -> str:
    job = (await pipeline.http.get(f"/v1/jobs/{job_id}")).json()
    return next(s["status"] for s in job["stages"] if s["stage"] == stage)


# ---------------------------------------------------------------- analyze


async def test_analyze_with_a_search_console_export_watches_and_prints_gaps(pipeline, site, tmp_path):
    url = _page(site, "cli-analyze")
    export = tmp_path / "Queries.csv"
    export.write_bytes((DEMO / "queries.csv").read_bytes())
    done = await run_cli("analyze", url, "--gsc", str(export), env=cli_env(pipeline, tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job_id = JOB_LINE.search(done.stdout).group(1)
    for stage in ("submit_crawl", "wait_crawl", "segment_embed", "keyword_clustering", "gap_analysis", "rewrite_draft"):
        assert stage in done.stdout
    assert "missing intent" in done.stdout and "why" in done.stdout and "Brief for gap 1 (cluster " in done.stdout
    result = (await pipeline.http.get(f"/v1/jobs/{job_id}/result")).json()
    top_gap = next(g for g in result["gaps"] if g["has_gap"])
    assert top_gap["representative"] in done.stdout and f"{top_gap['opportunity_score']:.3f}" in done.stdout
    assert f"Report:    {pipeline.api_url}/v1/jobs/{job_id}/report" in done.stdout
    assert result["stats"]["keywords"] == len(demo_keywords())  # the export's rows went with the job


async def test_analyze_json_keywords_without_waiting(pipeline, site, tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"keywords": demo_keywords()[:30]}))
    started = await run_cli(
        "analyze",
        _page(site, "cli-nowait"),
        "--keywords",
        str(rows),
        "--no-wait",
        "--json",
        env=cli_env(pipeline, tmp_path),
        cwd=tmp_path,
    )
    assert started.returncode == 0, started.stderr
    created = json.loads(started.stdout)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed"
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["stats"]["keywords"] == 30


async def test_analyze_failures_are_one_line_reasons(pipeline, tmp_path):
    env = cli_env(pipeline, tmp_path)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("Top queries,Clicks,Impressions,CTR,Position\nfig care,1,10,250%,3\n")
    cases = {
        (
            "analyze",
            "https://example.com/p",
            "--keywords",
            str(bad_csv),
        ): "error: bad.csv line 2, column CTR: '250%' is above 100%",
        ("analyze", "ftp://example.com/p"): "error: 422: ",
        (
            "analyze",
            "https://example.com/p",
            "--gsc",
            str(bad_csv),
            "--keywords",
            str(bad_csv),
        ): "error: give --gsc or --keywords, not both",
    }
    for args, reason in cases.items():
        done = await run_cli(*args, env=env, cwd=tmp_path)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(reason) and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
    down = await run_cli(
        "analyze",
        "https://example.com/p",
        cwd=tmp_path,
        env=cli_env(pipeline, tmp_path, PAGEPERFECT_API_URL=f"http://127.0.0.1:{free_port()}"),
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "did not answer" in down.stderr


async def _analyze_in_background(
    pipeline, url: str, tmp_path: Path, *, stdin
) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pageperfect.cli",
        "analyze",
        url,
        env=cli_env(pipeline, tmp_path),
        cwd=tmp_path,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    match = JOB_LINE.search(line.decode())
    assert match, line
    job_id = match.group(1)
    # Interrupt only once the job is parked in wait_crawl (the never-done crawl), not mid-submit.
    await until(lambda: _stage_is(pipeline, job_id, "wait_crawl", "processing"), what="wait_crawl processing")
    return proc, job_id


async def test_ctrl_c_without_a_terminal_stops_watching_and_leaves_the_job(pipeline_factory, site, tmp_path):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    proc, job_id = await _analyze_in_background(
        pipeline, site.add("/cli-ctrl-c.html", b"<html></html>"), tmp_path, stdin=asyncio.subprocess.DEVNULL
    )
    try:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 130, err
        assert f"stopped watching; job {job_id} keeps running" in err.decode()
        assert "Traceback" not in err.decode()
        assert (await pipeline.http.get(f"/v1/jobs/{job_id}")).json()["status"] == "processing"
    finally:
        await pipeline.http.post(f"/v1/jobs/{job_id}/cancel")
        await pipeline.wait(job_id)


async def test_ctrl_c_in_a_terminal_asks_and_can_cancel(pipeline_factory, site, tmp_path):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    main, terminal = pty.openpty()  # stdin is a terminal: the command asks
    try:
        proc, job_id = await _analyze_in_background(
            pipeline, site.add("/cli-ctrl-c-tty.html", b"<html></html>"), tmp_path, stdin=terminal
        )
        proc.send_signal(signal.SIGINT)
        asked = b""
        while b"Cancel job" not in asked:
            chunk = await asyncio.wait_for(proc.stderr.read(200), 60)
            assert chunk, asked
            asked += chunk
        os.write(main, b"y\n")
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 130, err
        assert f"cancel requested for job {job_id}" in err.decode()
        job = await pipeline.wait(job_id)
        assert job["status"] == "cancelled"
    finally:
        os.close(main)
        os.close(terminal)


# ---------------------------------------------------------------- jobs tune


async def test_tune_changes_the_policy_of_stages_not_started(pipeline_factory, site, pool, client, tmp_path):
    gates: list[GatedCrawler] = []
    pipeline = await pipeline_factory(wrap_crawler=lambda inner: gates.append(GatedCrawler(inner)) or gates[-1])
    created = await pipeline.submit(
        url=_page(site, "cli-tune"), keywords=demo_keywords(), max_attempts=20, retry_delay_seconds=1
    )
    job_id = created["job_id"]
    await until(lambda: _stage_is(pipeline, job_id, "submit_crawl", "processing"), what="submit_crawl running")
    # keyword_clustering needs nothing from the crawl: it was scheduled beside submit_crawl, with the first policy.
    await until(lambda: _stage_is(pipeline, job_id, "keyword_clustering", "completed"), what="clustering done")

    tuned = await run_cli(
        "jobs",
        "tune",
        job_id,
        "--max-attempts",
        "7",
        "--retry-delay",
        "2.5",
        env=cli_env(pipeline, tmp_path),
        cwd=tmp_path,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert "max attempts 7, first retry after 2.5 s" in tuned.stdout
    assert "running now, unchanged: submit_crawl" in tuned.stdout
    row = await pool.fetchrow("SELECT max_attempts, retry_delay_seconds FROM pageperfect_jobs WHERE id = $1", job_id)
    assert (row["max_attempts"], row["retry_delay_seconds"]) == (7, 2.5)

    gates[0].release()
    assert (await pipeline.wait(job_id))["status"] == "completed"
    stages = {
        r["stage"]: r["max_attempts"]
        for r in await pool.fetch("SELECT stage, max_attempts FROM pageperfect_job_stages WHERE job_id = $1", job_id)
    }
    assert stages == {
        "submit_crawl": 20,
        "wait_crawl": 7,
        "segment_embed": 7,
        "keyword_clustering": 20,
        "gap_analysis": 7,
        "rewrite_draft": 7,
    }
    # The truth behind the mirror: the policies Temporal scheduled each activity with.
    scheduled = {}
    async for event in client.get_workflow_handle(
        created["workflow_id"], run_id=created["run_id"]
    ).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[attrs.activity_type.name] = (
                attrs.retry_policy.maximum_attempts,
                attrs.retry_policy.initial_interval.ToTimedelta().total_seconds(),
            )
    assert scheduled["submit_crawl"] == scheduled["keyword_clustering"] == (20, 1.0)
    assert all(scheduled[s] == (7, 2.5) for s in ("wait_crawl", "segment_embed", "gap_analysis", "rewrite_draft"))

    # A job that has ended cannot be tuned; neither can one that does not exist; an empty request says so.
    again = await run_cli("jobs", "tune", job_id, "--max-attempts", "3", env=cli_env(pipeline, tmp_path), cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.strip() == f"error: 409: job {job_id} is already completed"
    unknown = await pipeline.http.post("/v1/jobs/00000000-0000-4000-8000-000000000000/tune", json={"max_attempts": 3})
    assert unknown.status_code == 404
    empty = await pipeline.http.post(f"/v1/jobs/{job_id}/tune", json={})
    assert empty.status_code == 422 and "max_attempts, retry_delay_seconds or both" in empty.text
    assert (await pipeline.http.post(f"/v1/jobs/{job_id}/tune", json={"max_attempts": 0})).status_code == 422


async def _stage_is(pipeline, job_id: str, stage: str, status: str) -> bool:
    return await _stage_status(pipeline, job_id, stage) == status


# ---------------------------------------------------------------- replay


async def test_replay_of_the_kept_history_and_of_an_altered_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "DATABASE_URL")}
    kept = await run_cli("replay", str(KEPT_HISTORY), env=env, cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[-1] == "1 replayed, 0 failed"

    # The same run, but history says the third stage was another activity: the code no longer matches it.
    history = json.loads(KEPT_HISTORY.read_text())
    swapped = 0
    for event in history["events"]:
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs and attrs["activityType"]["name"] == "segment_embed":
            attrs["activityType"]["name"] = "keyword_clustering"
            swapped += 1
    assert swapped == 1
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(history))
    both = await run_cli("replay", str(KEPT_HISTORY), str(altered), env=env, cwd=tmp_path)
    assert both.returncode == 1
    lines = both.stdout.splitlines()
    assert lines[0].startswith("ok") and "demo-completed" in lines[0]
    assert lines[1].startswith("NON-DETERMINISTIC  altered") and "[TMPRL1100] Nondeterminism error" in lines[1]
    assert "'keyword_clustering' does not match" in lines[1]
    assert lines[-1] == "2 replayed, 1 failed"

    not_history = tmp_path / "not-history.json"
    not_history.write_text('{"workflows": []}')
    refused = await run_cli("replay", str(not_history), env=env, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1


async def test_replay_fetches_runs_from_temporal(pipeline, site, temporal_server, tmp_path):
    created = await pipeline.submit(url=_page(site, "cli-replay"), keywords=demo_keywords())
    assert (await pipeline.wait(created["job_id"]))["status"] == "completed"
    env = cli_env(pipeline, tmp_path, TEMPORAL_ADDRESS=temporal_server.address)

    one = await run_cli(
        "replay", "--workflow-id", created["workflow_id"], "--run-id", created["run_id"], env=env, cwd=tmp_path
    )
    assert one.returncode == 0, one.stderr
    assert f"ok                 {created['workflow_id']} {created['run_id']}" in one.stdout

    # --all, narrowed to this test's task queue so other tests' runs stay out of it.
    queue = f"{pipeline.prefix}-workflow"
    every = await run_cli("replay", "--all", "--query", f"TaskQueue = '{queue}'", env=env, cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines()[-1] == "1 replayed, 0 failed"

    missing = await run_cli("replay", "--workflow-id", "pageperfect-page-no-such", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1


async def test_commands_fail_in_one_line_when_servers_are_down(tmp_path):
    """No server answers: every command says so in one line and exits 1, never with a traceback."""
    nowhere = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEPERFECT_")}
    env.update(
        PAGEPERFECT_API_URL=f"http://{nowhere}",
        TEMPORAL_ADDRESS=nowhere,
        PAGEPERFECT_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"postgresql://pp@{nowhere}/pp",
        PAGEPERFECT_API_KEY="pp_unused",
    )
    commands = [
        ("jobs", "list"),
        ("jobs", "show", "3f2c9a0e-0000-4000-8000-000000000000"),
        ("jobs", "tune", "3f2c9a0e-0000-4000-8000-000000000000", "--max-attempts", "3"),
        ("report", "3f2c9a0e-0000-4000-8000-000000000000"),
        ("analyze", "https://example.com/p"),
        ("replay", "--all"),
        ("replay", "--workflow-id", "pageperfect-page-1"),
        ("mirror", "reconcile", "--check"),
        ("dead-letters", "redrive", "1"),
        ("migrate",),
        ("gsc", "import", str(DEMO / "queries.csv"), "--page", "https://example.com/p"),
    ]
    results = await asyncio.gather(*(run_cli(*args, env=env, cwd=tmp_path) for args in commands))
    for args, done in zip(commands, results):
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, (args, done.stderr)
        assert any(word in done.stderr for word in ("did not answer", "could not connect")), (args, done.stderr)
