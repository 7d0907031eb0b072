"""Embedding and LLM endpoints that rate-limit, fail and hang (OpenAIStub over real HTTP).

A request is retried inside the stage first (429 waits for Retry-After, 5xx backs off,
a hang is cut by PAGEPERFECT_PROVIDER_TIMEOUT); when those tries are spent the stage
attempt fails and Temporal retries it per the stage table; when the job's attempts are
spent the job is dead-lettered with the provider's error as its reason.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.data import demo_keywords
from tests.openai_server import OpenAIStub

ROUGH_ENDPOINT = [{"status": 429, "retry_after": 1}, 500, {"hang": 6}]
# The chat faults are aimed at the drafts: the coverage judge asks the same endpoint earlier in the job.
DRAFTS = "You improve one passage"


def _at_drafts(faults: list) -> list[dict]:
    return [{**(f if isinstance(f, dict) else {"status": f}), "when": DRAFTS} for f in faults]


@pytest.fixture
def ai():
    with OpenAIStub() as stub:
        yield stub


async def _pipeline(pipeline_factory, ai):
    return await pipeline_factory(
        openai_api_key="sk-fault-test", openai_base_url=ai.base_url, provider_timeout_seconds=2.0
    )


def _stage_counts(result: dict, name: str) -> dict:
    return (result["stages"].get(name) or {}).get("counts", {})


def _stage(job: dict, name: str) -> dict:
    return next(s for s in job["stages"] if s["stage"] == name)


async def test_embeddings_429_then_500_then_hang_are_retried_and_the_job_completes(pipeline_factory, site, ai):
    pipeline = await _pipeline(pipeline_factory, ai)
    ai.script_faults("embeddings", ROUGH_ENDPOINT)
    url = site.add("/provider-embeddings.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords())
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed", job
    # The three faults cost segment_embed three extra requests, not a failed attempt.
    assert _stage(job, "segment_embed")["attempt_count"] == 1
    assert ai.requests["embeddings"] >= 4
    assert not ai._faults["embeddings"]


async def test_llm_429_then_500_then_hang_are_retried_and_the_job_completes(pipeline_factory, site, ai):
    pipeline = await _pipeline(pipeline_factory, ai)
    ai.script_faults("chat/completions", _at_drafts(ROUGH_ENDPOINT))
    url = site.add("/provider-llm.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords())
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed", job
    assert _stage(job, "rewrite_draft")["attempt_count"] == 1
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["drafts"] and all(d["kind"] == "draft" for d in result["drafts"])
    judged = _stage_counts(result, "gap_analysis").get("judge_asked", 0)
    assert ai.requests["chat/completions"] == len(result["drafts"]) + len(ROUGH_ENDPOINT) + judged


async def test_llm_failing_past_its_retries_dead_letters_with_the_reason(pipeline_factory, site, ai, pool):
    pipeline = await _pipeline(pipeline_factory, ai)
    ai.script_faults("chat/completions", _at_drafts([500] * 50))
    url = site.add("/provider-llm-down.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords(), max_attempts=2, retry_delay_seconds=0.2)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "failed" and job["stage"] == "rewrite_draft"
    stage = _stage(job, "rewrite_draft")
    assert stage["status"] == "failed" and stage["attempt_count"] == 2
    letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    assert letter["stage"] == "rewrite_draft" and letter["attempt_count"] == 2
    assert "500" in letter["failure_reason"], letter["failure_reason"]
    # Each attempt made the client's four tries (one and three retries) before giving up.
    drafts = [b for b in ai.bodies["chat/completions"] if DRAFTS in json.dumps(b)]
    assert len(drafts) == 8


async def test_embeddings_rate_limited_past_their_retries_dead_letter_with_the_reason(pipeline_factory, site, ai, pool):
    pipeline = await _pipeline(pipeline_factory, ai)
    ai.script_faults("embeddings", [{"status": 429, "retry_after": 0}] * 50)
    url = site.add("/provider-embeddings-down.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords(), max_attempts=2, retry_delay_seconds=0.2)
    job = await pipeline.wait(created["job_id"])
    # Both embedding stages run side by side against the same refusing endpoint: the first to run
    # out of attempts ends the job, and the other, if still running, is cancelled.
    assert job["status"] == "failed" and job["stage"] in ("segment_embed", "keyword_clustering")
    letter = await pool.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE job_id = $1", created["job_id"])
    assert letter["stage"] == job["stage"] and letter["attempt_count"] == 2
    assert letter["failure_reason"].startswith("EmbeddingError") and "429" in letter["failure_reason"]
