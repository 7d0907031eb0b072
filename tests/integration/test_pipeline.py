"""A whole job through the real Temporal server, workers, API and Postgres."""

from __future__ import annotations

import json

from tests.helpers.data import demo_keywords
from tests.helpers.settings import DEMO


async def test_demo_job_completes_and_mirrors(pipeline, site, pool, client):
    created = await pipeline.submit(url=site.base_url + "/index.html", keywords=demo_keywords())
    assert created["status"] == "queued" and created["job_id"]
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed", job
    assert [s["stage"] for s in job["stages"]] == [
        "submit_crawl",
        "wait_crawl",
        "segment_embed",
        "keyword_clustering",
        "gap_analysis",
        "rewrite_draft",
    ]
    assert all(s["status"] == "completed" and s["attempt_count"] == 1 for s in job["stages"]), job["stages"]

    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["page"]["title"]
    assert result["providers"]["offline"] is True and "OPENAI_API_KEY" in result["providers"]["note"]
    assert result["stats"]["segments"] > 5 and result["stats"]["clusters"] > 3
    expected = json.loads((DEMO / "expected.json").read_text())
    gap_queries = {q for g in result["gaps"] if g["has_gap"] for q in g["keywords"]}
    for topic, queries in expected["gap_topics"].items():
        assert len(set(queries) & gap_queries) >= len(queries) / 2, f"missing topic {topic} not reported"
    for topic, queries in expected["covered_topics"].items():
        assert len(set(queries) & gap_queries) <= len(queries) / 2, f"covered topic {topic} reported as a gap"
    assert result["drafts"] and all(d["kind"] == "brief" for d in result["drafts"])
    # The briefs are for the top gaps, in the order of their ranks (the table's order).
    ranked = [g["cluster_id"] for g in result["gaps"] if g["has_gap"]]
    assert [d["cluster_id"] for d in result["drafts"]] == ranked[: len(result["drafts"])]

    # The operators' dashboard queries return this job's rows.
    job_id = created["job_id"]
    status_rows = await pool.fetch("SELECT * FROM v_pageperfect_job_status WHERE job_id = $1", job_id)
    assert status_rows[0]["status"] == "completed" and status_rows[0]["stages_completed"] == 6
    events = await pool.fetch(
        "SELECT * FROM pageperfect_job_events WHERE created_at > now() - interval '1 hour' AND job_id = $1", job_id
    )
    assert {(e["stage"], e["status"]) for e in events} >= {
        ("gap_analysis", "processing"),
        ("gap_analysis", "completed"),
    }
    stage_rows = await pool.fetch("SELECT * FROM pageperfect_job_stages WHERE job_id = $1", job_id)
    assert len(stage_rows) == 6
    await pool.fetch("SELECT * FROM get_pageperfect_stage_backlog()")

    # The Web UI can filter by page URL.
    handle = client.get_workflow_handle(created["workflow_id"], run_id=created["run_id"])
    description = await handle.describe()
    attrs = {k.name: v for k, v in description.typed_search_attributes}
    assert attrs["PagePerfectUrl"] == site.base_url + "/index.html"
    assert attrs["PagePerfectStage"] == "completed"


async def test_dashboard_queries_in_the_docs_run(pipeline, site, pool):
    import re

    from tests.helpers.settings import REPO

    created = await pipeline.submit(
        url=site.add("/dashboards.html", site.handler.routes["/index.html"][2]), keywords=demo_keywords()
    )
    await pipeline.wait(created["job_id"])
    text = (REPO / "docs" / "DASHBOARDS.md").read_text() + (REPO / "README.md").read_text()
    statements = [s.strip() for block in re.findall(r"```sql\n(.*?)```", text, re.S) for s in block.split(";")]
    statements = [s for s in statements if s and not all(line.startswith("--") for line in s.splitlines())]
    assert len(statements) >= 10
    for statement in statements:
        await pool.fetch(statement.replace("<job id>", created["job_id"]))
    rows = await pool.fetch("SELECT * FROM pageperfect_job_stages WHERE job_id = $1", created["job_id"])
    assert len(rows) == 6
