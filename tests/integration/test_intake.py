"""Bad input at the intake: a 4xx with a clear message, and nothing created."""

from __future__ import annotations

import pytest

GOOD_ROW = {"query": "fiddle leaf fig", "clicks": 1, "impressions": 10, "ctr": 0.1, "position": 3.0}

BAD_BODIES = [
    ({}, 422, "url or page_id"),
    ({"url": "http://example.com/", "page_id": 1}, 422, "not both"),
    ({"url": "not a url"}, 422, ""),
    ({"url": "ftp://example.com/file"}, 422, "http"),
    ({"url": "javascript:alert(1)"}, 422, ""),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, 422, ""),
    ({"url": "http://10.0.0.7/"}, 422, "private"),
    ({"url": "http://[::1]/"}, 422, ""),
    ({"url": "http://example.com/" + "a" * 3000}, 422, ""),
    ({"url": "http://example.com/", "max_attempts": 0}, 422, "max_attempts"),
    ({"url": "http://example.com/", "max_attempts": 10000}, 422, "max_attempts"),
    ({"url": "http://example.com/", "skip_steps": ["teleport"]}, 422, "skip_steps"),
    ({"url": "http://example.com/", "priority": "high"}, 422, "priority"),
    ({"url": "http://example.com/", "force_update": "perhaps"}, 422, "force_update"),
    ({"url": 12345}, 422, "url"),
    ({"url": "http://example.com/", "keywords": "fig"}, 422, "keywords"),
    ({"url": "http://example.com/", "keywords": [{**GOOD_ROW, "impressions": -5}]}, 422, "impressions"),
    ({"url": "http://example.com/", "keywords": [{**GOOD_ROW, "position": 0}]}, 422, "position"),
    ({"url": "http://example.com/", "keywords": [{**GOOD_ROW, "query": "  "}]}, 422, "query"),
    ({"url": "http://example.com/", "unexpected": True}, 422, "unexpected"),
    ({"page_id": 987654321}, 404, "no page"),
]


@pytest.mark.parametrize(("body", "status", "says"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
async def test_bad_job_requests_are_refused(pipeline, pool, body, status, says):
    before = await pool.fetchval("SELECT count(*) FROM pageperfect_jobs")
    response = await pipeline.http.post("/v1/jobs", json=body)
    assert response.status_code == status, response.text
    assert says.lower() in response.text.lower()
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_jobs") == before


async def test_non_finite_numbers_and_bad_json_are_refused(pipeline):
    raw = '{"url": "http://example.com/", "keywords": [{"query": "q", "impressions": NaN}]}'
    response = await pipeline.http.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    response = await pipeline.http.post("/v1/jobs", content="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


async def test_huge_body_is_refused_with_413(pipeline, pool):
    before = await pool.fetchval("SELECT count(*) FROM pageperfect_jobs")
    body = b'{"url": "http://example.com/", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = await pipeline.http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "MB" in response.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_jobs") == before


async def test_unknown_job_ids(pipeline):
    assert (await pipeline.http.get("/v1/jobs/not-a-uuid")).status_code == 422
    missing = await pipeline.http.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "no job" in missing.json()["detail"]


async def test_healthz_reports_both_backends(pipeline):
    response = await pipeline.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "postgres": "ok", "temporal": "ok"}


async def test_start_response_says_whether_a_run_was_started(client):
    """The intake trusts the start response to tell a new run from a running one (no history read);
    if the SDK stops keeping the response on the handle, this says so instead of a silent slow path."""
    import uuid

    from temporalio.common import WorkflowIDConflictPolicy

    from pageperfect.services.intake import started_new_run

    workflow_id, queue = f"start-flag-{uuid.uuid4()}", f"nobody-{uuid.uuid4()}"
    first = await client.start_workflow(
        "Nothing", id=workflow_id, task_queue=queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING
    )
    again = await client.start_workflow(
        "Nothing", id=workflow_id, task_queue=queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING
    )
    try:
        assert started_new_run(first) is True
        assert started_new_run(again) is False
        assert again.result_run_id == first.result_run_id
    finally:
        await first.terminate()
