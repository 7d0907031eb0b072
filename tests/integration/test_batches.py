"""Batches: one job per page with a bound on how many run at once, through the real API, Temporal and Postgres."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from temporalio.client import WorkflowExecutionStatus

from tests.helpers.batches import HangOn, batch_when, replays, wait_batch
from tests.helpers.data import demo_keywords, pages
from tests.helpers.settings import TEST_API_KEY
from tests.helpers.cli import run_merged

CHILD_ENDED = (
    "child_workflow_execution_completed_event_attributes",
    "child_workflow_execution_failed_event_attributes",
    "child_workflow_execution_canceled_event_attributes",
    "child_workflow_execution_terminated_event_attributes",
)


async def most_children_at_once(client, workflow_id: str) -> int:
    running = most = 0
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        kind = event.WhichOneof("attributes")
        if kind == "child_workflow_execution_started_event_attributes":
            running += 1
            most = max(most, running)
        elif kind in CHILD_ENDED:
            running -= 1
    return most


async def test_batch_runs_every_page_two_at_a_time(pipeline, site, client, pool):
    urls = pages(site, "batch", 4)
    keywords = demo_keywords()[:25]
    response = await pipeline.http.post(
        "/v1/batches",
        json={
            "urls": urls + [urls[0]],
            "concurrency": 2,
            "keywords": {u: keywords for u in urls},
            "options": {"top_gaps": 1},
        },
    )
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["pages"] == 4 and created["duplicates_dropped"] == 1

    batch = await wait_batch(pipeline, created["batch_id"])
    assert batch["status"] == "completed"
    assert batch["counts"]["completed"] == 4 and batch["ended"] == batch["total"] == 4
    assert [p["url"] for p in batch["pages"]] == urls
    assert all(p["status"] == "completed" and not p["existing"] for p in batch["pages"])
    # Two at a time, never more: read off the batch's own history.
    assert await most_children_at_once(client, created["workflow_id"]) == 2
    await replays(client, created["workflow_id"], pipeline.settings)

    for page in batch["pages"]:
        job = (await pipeline.http.get(f"/v1/jobs/{page['job_id']}")).json()
        assert job["status"] == "completed" and job["workflow_id"].startswith("pageperfect-page-")
        row = await pool.fetchrow("SELECT payload, run_id FROM pageperfect_jobs WHERE id = $1", page["job_id"])
        assert row["payload"]["batch_id"] == created["batch_id"] and row["run_id"]
        assert row["payload"]["job"]["options"]["top_gaps"] == 1
        result = (await pipeline.http.get(f"/v1/jobs/{page['job_id']}/result")).json()
        assert result["stats"]["keywords"] == 25  # the batch's keywords for the page
    listed = (await pipeline.http.get("/v1/batches")).json()
    assert any(b["batch_id"] == created["batch_id"] and b["counts"]["completed"] == 4 for b in listed)


async def test_bad_batches_are_refused_and_leave_nothing(pipeline, site, pool):
    before = await pool.fetchval("SELECT count(*) FROM pageperfect_batches")
    good = site.base_url + "/index.html"
    cases = [
        ({"urls": [good, "ftp://example.com/x", "http://169.254.169.254/latest"]}, ["urls[1]", "urls[2]"]),
        ({"urls": [good], "keywords": {"https://example.com/elsewhere": []}}, ["not one of the batch's urls"]),
        ({"urls": [good], "webhook_url": "http://169.254.169.254/hook"}, ["webhook_url"]),
        ({"urls": [good], "concurrency": 0}, ["concurrency"]),
        ({"urls": []}, ["urls"]),
        ({"urls": [good], "skip_steps": ["nonsense"]}, ["skip_steps"]),
    ]
    for body, expected in cases:
        response = await pipeline.http.post("/v1/batches", json=body)
        assert response.status_code == 422, (body, response.text)
        text = response.text
        assert all(e in text for e in expected), text
    bad_csv = await pipeline.http.post("/v1/batches/csv", files={"file": ("p.csv", b"page,query\nx", "text/csv")})
    assert bad_csv.status_code == 422 and "p.csv" in bad_csv.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_batches") == before
    assert (await pipeline.http.get("/v1/batches/00000000-0000-0000-0000-000000000000")).status_code == 404


async def test_a_busy_page_is_linked_not_run_twice(pipeline_factory, site, pool):
    pipeline = await pipeline_factory(wrap_crawler=HangOn, batch_poll_seconds=0.5)
    busy = site.add("/hang-busy.html", site.handler.routes["/index.html"][2])
    (other,) = pages(site, "beside-busy", 1)
    running = await pipeline.submit(url=busy, keywords=demo_keywords()[:10])
    await pipeline.wait(running["job_id"], statuses=("processing",))

    created = (await pipeline.http.post("/v1/batches", json={"urls": [busy, other]})).json()
    # The batch reaches the busy page and takes the running job as its own (dropping the row it had made).
    batch = await batch_when(pipeline, created["batch_id"], lambda b: b["pages"][0]["existing"])
    assert batch["pages"][0]["job_id"] == running["job_id"] and batch["pages"][0]["existing"]
    assert (await pipeline.http.post(f"/v1/jobs/{running['job_id']}/cancel")).status_code == 202

    batch = await wait_batch(pipeline, created["batch_id"])
    assert batch["status"] == "completed"
    assert {p["url"]: p["status"] for p in batch["pages"]} == {busy: "cancelled", other: "completed"}
    page_id = running["page_id"]
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_jobs WHERE page_id = $1", page_id) == 1


async def test_cancelling_a_batch_cancels_its_jobs(pipeline_factory, site, pool, client):
    pipeline = await pipeline_factory(wrap_crawler=HangOn)
    urls = [site.add(f"/hang-cancel-{i}.html", "<html><body><p>never fetched</p></body></html>") for i in range(3)]
    created = (await pipeline.http.post("/v1/batches", json={"urls": urls, "concurrency": 2})).json()
    await batch_when(pipeline, created["batch_id"], lambda b: b["counts"]["processing"] == 2)
    response = await pipeline.http.post(f"/v1/batches/{created['batch_id']}/cancel")
    assert response.status_code == 202, response.text
    batch = await wait_batch(pipeline, created["batch_id"])
    assert batch["status"] == "cancelled"
    assert batch["counts"]["cancelled"] == 3 and batch["ended"] == 3
    started = [p for p in batch["pages"] if p["job_id"]]
    assert len(started) == 2
    for page in started:
        row = await pool.fetchrow("SELECT status FROM pageperfect_jobs WHERE id = $1", page["job_id"])
        assert row["status"] == "cancelled"
        assert not await pool.fetchval(
            "SELECT count(*) FROM pageperfect_dead_letters WHERE job_id = $1", page["job_id"]
        )
    again = await pipeline.http.post(f"/v1/batches/{created['batch_id']}/cancel")
    assert again.status_code == 409
    described = await client.get_workflow_handle(created["workflow_id"]).describe()
    assert described.status == WorkflowExecutionStatus.CANCELED


async def test_a_terminated_batch_shows_as_failed_and_its_jobs_end(pipeline_factory, site, client):
    pipeline = await pipeline_factory(wrap_crawler=HangOn)
    url = site.add("/hang-terminated.html", "<html><body><p>never fetched</p></body></html>")
    created = (await pipeline.http.post("/v1/batches", json={"urls": [url]})).json()
    await batch_when(pipeline, created["batch_id"], lambda b: b["counts"]["processing"] == 1)
    await client.get_workflow_handle(created["workflow_id"]).terminate("operator stopped it")
    batch = await batch_when(pipeline, created["batch_id"], lambda b: b["status"] != "running")
    assert batch["status"] == "failed"
    # Its running job was asked to cancel when the batch went (parent close policy), and ends cancelled.
    job = await pipeline.wait(batch["pages"][0]["job_id"])
    assert job["status"] == "cancelled"


async def test_cli_batch_from_a_page_and_query_csv(pipeline, site, tmp_path):
    urls = pages(site, "cli-batch", 2)
    rows = "".join(
        f"{u},{r['query']},{r['clicks']},{r['impressions']},{r['ctr']},{r['position']}\n"
        for u in urls
        for r in demo_keywords()[:12]
    )
    csv_file = tmp_path / "pages.csv"
    csv_file.write_text("page,query,clicks,impressions,ctr,position\n" + rows)
    env = {**os.environ, "PAGEPERFECT_API_URL": pipeline.api_url, "PAGEPERFECT_API_KEY": TEST_API_KEY, "COLUMNS": "160"}
    code, text = await run_merged(
        sys.executable, "-m", "pageperfect.cli", "batch", str(csv_file), "--concurrency", "2", env=env, timeout=240
    )
    assert code == 0, text
    assert "2 pages, 2 at a time" in text and "batch completed: 2 completed" in text
    batch_id = text.split("batch ", 1)[1].split(":", 1)[0]
    batch = (await pipeline.http.get(f"/v1/batches/{batch_id}")).json()
    assert batch["source"] == "csv" and batch["counts"]["completed"] == 2
    for page in batch["pages"]:
        result = (await pipeline.http.get(f"/v1/jobs/{page['job_id']}/result")).json()
        assert result["stats"]["keywords"] == 12

    url_list = tmp_path / "pages.txt"
    url_list.write_text("# two pages\n\n" + "\n".join(urls) + "\nnot a url\n")
    code, text = await run_merged(sys.executable, "-m", "pageperfect.cli", "batch", str(url_list), env=env, timeout=120)
    assert code == 1 and "urls[2]" in text, text


async def test_a_batch_with_payload_encryption(pipeline_factory, site, client):
    import base64
    import secrets

    pipeline = await pipeline_factory(payload_key=base64.b64encode(secrets.token_bytes(32)).decode())
    (url,) = pages(site, "encrypted-batch", 1)
    created = (
        await pipeline.http.post("/v1/batches", json={"urls": [url], "keywords": {url: demo_keywords()[:10]}})
    ).json()
    batch = await wait_batch(pipeline, created["batch_id"])
    assert batch["status"] == "completed" and batch["counts"]["completed"] == 1
    # Search attributes are never encrypted, so the page's URL is not among them.
    job = (await pipeline.http.get(f"/v1/jobs/{batch['pages'][0]['job_id']}")).json()
    described = await client.get_workflow_handle(job["workflow_id"]).describe()
    names = {pair.key.name for pair in described.typed_search_attributes}
    assert "PagePerfectJobId" in names and "PagePerfectUrl" not in names


async def test_a_linked_job_terminated_by_hand_ends_its_page(pipeline_factory, site, client):
    pipeline = await pipeline_factory(wrap_crawler=HangOn, batch_poll_seconds=0.5)
    busy = site.add("/hang-terminated-job.html", "<html><body><p>never fetched</p></body></html>")
    running = await pipeline.submit(url=busy)
    await pipeline.wait(running["job_id"], statuses=("processing",))
    created = (await pipeline.http.post("/v1/batches", json={"urls": [busy]})).json()
    await batch_when(pipeline, created["batch_id"], lambda b: b["pages"][0]["existing"])
    # Terminated, the job never writes its ending; the batch reads it from Temporal and repairs the row.
    await client.get_workflow_handle(running["workflow_id"]).terminate("by hand")
    batch = await wait_batch(pipeline, created["batch_id"])
    assert batch["status"] == "completed"
    assert batch["pages"][0]["status"] == "failed" and batch["counts"]["failed"] == 1


async def test_a_long_batch_continues_as_new_and_counts_every_page(pipeline, site, client, pool):
    from pageperfect.messages import BatchInput
    from workflows.batch import PagePerfectBatchWorkflow

    urls = pages(site, "continued", 5)
    workflow_id = f"pageperfect-batch-test-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        PagePerfectBatchWorkflow.run,
        BatchInput(urls=urls, concurrency=2, pages_per_run=2, queue_prefix=pipeline.prefix, source="test"),
        id=workflow_id,
        task_queue=f"{pipeline.prefix}-workflow",
    )
    summary = await asyncio.wait_for(handle.result(), timeout=180)  # follows the chain of runs
    assert summary["status"] == "completed" and summary["total"] == 5 and summary["counts"]["completed"] == 5
    runs = await batch_runs(client, workflow_id, 3)
    assert len(runs) == 3  # 2 + 2 + 1 pages
    progress = await client.get_workflow_handle(workflow_id).query("progress")
    assert progress["ended"] == {"completed": 5}
    batch = await pool.fetchrow("SELECT * FROM pageperfect_batches WHERE id = $1", summary["batch_id"])
    assert batch["run_id"] == runs[0]  # the row follows the latest run


async def batch_runs(client, workflow_id: str, count: int) -> list[str]:
    """The run ids of a workflow id, newest first, once visibility has all `count` of them."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        runs = [w.run_id async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        if len(runs) >= count or asyncio.get_running_loop().time() > deadline:
            return runs
        await asyncio.sleep(0.3)
