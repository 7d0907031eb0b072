"""Prometheus metrics: the API's request series, and the Temporal SDK's series from the workers."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pageperfect.runtime.metrics import sdk_runtime
from pageperfect.runtime.stack import free_port
from pageperfect.runtime.temporal import connect
from pageperfect.services.intake import JobRequest, submit_job
from tests.helpers.cli import start_up, stop_up, wait_healthy
from tests.helpers.data import demo_keywords, pages
from tests.helpers.settings import make_settings

# The series docs/METRICS.md points operators at.
WORKER_SERIES = (
    "temporal_workflow_completed",
    "temporal_workflow_task_execution_latency_seconds",
    "temporal_activity_execution_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_worker_task_slots_available",
    "temporal_request",
)


def samples(text: str) -> list[tuple[str, dict, float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


async def test_api_requests_are_counted_by_route_template(pipeline):
    missing = uuid.uuid4()
    assert (await pipeline.http.get("/v1/jobs")).status_code == 200
    assert (await pipeline.http.get(f"/v1/jobs/{missing}")).status_code == 404
    assert (await pipeline.http.get("/no/such/path")).status_code == 404
    response = await pipeline.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    counted = {
        (labels["method"], labels["route"], labels["status"])
        for name, labels, value in found
        if name == "pageperfect_api_requests_total" and value >= 1
    }
    assert {("GET", "/v1/jobs", "200"), ("GET", "/v1/jobs/{job_id}", "404"), ("GET", "unmatched", "404")} <= counted
    assert not any(str(missing) in labels.get("route", "") for _, labels, _ in found)  # templates, not paths
    buckets = [
        labels
        for name, labels, _ in found
        if name == "pageperfect_api_request_duration_seconds_bucket" and labels["route"] == "/v1/jobs"
    ]
    assert buckets and {b["le"] for b in buckets} >= {"0.1", "1.0", "+Inf"}
    # Scraping needs the API key like every other route.
    async with httpx.AsyncClient(base_url=pipeline.api_url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401


async def test_worker_metrics_from_the_temporal_sdk(pool, temporal_server, site):
    from pageperfect.runtime.worker import build_workers

    port = free_port()
    settings = make_settings(temporal_address=temporal_server.address)
    client = await connect(temporal_server.address, settings=settings, runtime=sdk_runtime(port, "127.0.0.1"))
    prefix = f"t{uuid.uuid4().hex[:10]}"
    group = await build_workers(client, settings, pool, prefix=prefix)
    group.start()
    try:
        (url,) = pages(site, "metrics", 1)
        submitted = await submit_job(
            JobRequest(url=url, keywords=demo_keywords()[:10]),
            pool=pool,
            client=client,
            settings=settings,
            queue_prefix=prefix,
        )
        await asyncio.wait_for(client.get_workflow_handle(submitted.workflow_id).result(), timeout=120)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await group.shutdown()
    found = samples(text)
    names = {
        name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for name, _, _ in found
    }
    assert set(WORKER_SERIES) <= names, sorted(names)
    completed = [
        (labels, value)
        for name, labels, value in found
        if name == "temporal_workflow_completed_total" and labels.get("task_queue") == f"{prefix}-workflow"
    ]
    assert completed and completed[0][0]["workflow_type"] == "PagePerfect" and completed[0][1] >= 1
    stage_latency = {
        labels.get("activity_type")
        for name, labels, _ in found
        if name == "temporal_activity_execution_latency_seconds_count"
    }
    assert {"submit_crawl", "rewrite_draft", "finalize_job"} <= stage_latency


def test_pageperfect_up_serves_both(tmp_path):
    ports = {name: free_port() for name in ("api", "temporal", "ui", "metrics")}
    process = start_up(tmp_path, ports)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_healthy(api, process)
        key = (tmp_path / "api-key").read_text().strip()
        api_text = httpx.get(f"{api}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10).text
        assert "pageperfect_api_requests_total" in api_text
        worker_text = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).text
        assert "temporal_worker_task_slots_available" in worker_text
    finally:
        _, output = stop_up(process)
    assert f"http://127.0.0.1:{ports['metrics']}/metrics" in output
